"""The one way the tests serve an app over real sockets: uvicorn on a free 127.0.0.1 port, in
the test's own event loop (tests/security/relay_server.py serves it as `relay serve` does, with
the read deadlines, caps and drain, for the suites that test those)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import uvicorn

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.applications import Starlette


@dataclass(frozen=True, slots=True)
class LiveServer:
    """A uvicorn server on 127.0.0.1 serving an app in this event loop."""

    app: Starlette
    port: int

    @property
    def http_url(self) -> str:
        """Base URL for HTTP requests."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """Base URL for WebSocket connections."""
        return f"ws://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def serve(
    app: Starlette,
    *,
    lifespan: Literal["on", "off"] = "on",
    lean: bool = False,
    guarded: bool = False,
) -> AsyncIterator[LiveServer]:
    """Run `app` under uvicorn on a free port for the duration of the block; `lean`: its
    WebSockets on the local provider's lean socket server, `guarded`: its HTTP connections on
    `relay serve`'s protocol (app/guarded_http.py, which lends SSE streams their connection),
    as `relay serve` runs them."""
    ws: Any = "auto"
    http: Any = "auto"
    if guarded:
        from app.guarded_http import guarded_protocol

        http = guarded_protocol(app.state.relay.settings)
    if lean:
        from app.serving import WS_MAX_FRAME_BYTES
        from app.socket_server import lean_socket_protocol

        ws = lean_socket_protocol(app.state.relay, max_frame_bytes=WS_MAX_FRAME_BYTES)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan=lifespan,
        http=http,
        ws=ws,
        ws_ping_interval=None,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(5):
            while not server.started:
                if task.done():
                    task.result()  # surfaces the start-up error
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield LiveServer(app, port)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        sock.close()
