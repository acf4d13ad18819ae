"""app/serving.py: the uvicorn configuration `relay serve` runs with, on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from fastapi import Request  # noqa: TC002 - FastAPI reads the annotation at run time
from fastapi.responses import Response

from app import guarded_http, serving
from app.main import create_app
from app.relay import relay_of
from providers.local.sse_transport import LAST_CHUNK, LEND

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from core.settings import Settings


@contextlib.asynccontextmanager
async def _serve(app: FastAPI, settings: Settings) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(serving.build_config(app, settings, host="127.0.0.1", port=port))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(5):
            while not server.started:
                assert not task.done(), "uvicorn stopped before it started"
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@pytest.mark.parametrize("trust_proxy_headers", [False, True])
async def test_uvicorn_never_rewrites_the_peer_from_x_forwarded_for(
    relay_settings: Settings, trust_proxy_headers: bool
) -> None:
    settings = relay_settings.model_copy(update={"trust_proxy_headers": trust_proxy_headers})
    app = create_app(settings)

    @app.get("/probe")
    async def probe(request: Request) -> dict[str, Any]:
        return {
            "peer": request.scope["client"][0],
            "client_ip": relay_of(request).client_ip(request),
        }

    async with _serve(app, settings) as base, httpx.AsyncClient(base_url=base) as client:
        seen = (await client.get("/probe", headers={"X-Forwarded-For": "203.0.113.9"})).json()
    assert seen["peer"] == "127.0.0.1"
    # Only the relay reads the header, and only when told to trust it.
    assert seen["client_ip"] == ("203.0.113.9" if trust_proxy_headers else "127.0.0.1")


def test_the_config_pins_the_guarded_protocol_and_bounds(relay_settings: Settings) -> None:
    settings = relay_settings.model_copy(
        update={"max_connections": 500, "request_read_timeout_seconds": 7, "drain_seconds": 3}
    )
    config = serving.build_config(create_app(settings), settings, host="127.0.0.1", port=1)
    assert config.proxy_headers is False
    assert isinstance(config.http, type)
    assert issubclass(config.http, guarded_http.GuardedHttpProtocol)
    assert config.http.cap == 500
    assert config.http.read_timeout == 7
    assert config.backlog == 500
    assert config.timeout_graceful_shutdown == 3
    # Each server gets its own queue of connections waiting for headers.
    other = guarded_http.guarded_protocol(settings)
    assert other.waiting is not config.http.waiting


def _fit_in_child(soft: int, hard: int, max_connections: int) -> str:
    # A child process: limits lowered here could not be raised again in the test process.
    script = textwrap.dedent(f"""
        import resource
        from app.serving import fit_to_descriptors
        from core.settings import Settings
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
        settings = Settings.model_validate({{"max_connections": {max_connections}}})
        fitted = fit_to_descriptors(settings)
        print(fitted.max_connections, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


def test_the_descriptor_limit_is_raised_toward_the_hard_limit_first() -> None:
    assert _fit_in_child(256, 4096, 1000) == "1000 1064"


def test_connections_are_capped_to_what_the_descriptor_limit_holds() -> None:
    assert _fit_in_child(256, 256, 10_000) == "192 256"


class _Borrower:
    """Remembers what the server told it."""

    def __init__(self) -> None:
        self.told: list[str] = []

    def pause_writing(self) -> None:
        self.told.append("pause")

    def resume_writing(self) -> None:
        self.told.append("resume")

    def connection_lost(self) -> None:
        self.told.append("lost")


class _Borrowing(Response):
    """Writes its headers through ASGI, then its body on the borrowed connection if lent."""

    def __init__(self, *, sized: bool) -> None:
        super().__init__()
        self.sized = sized

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        lend = scope.get("extensions", {}).get(LEND, {}).get("lend")
        headers = [(b"content-length", b"6")] if self.sized else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        lent = None if lend is None else lend(_Borrower())
        if lent is None:
            await send({"type": "http.response.body", "body": b"asgi!\n"})
            return
        lent.transport.write(b"5\r\nlent\n\r\n" + LAST_CHUNK)
        lent.give_back(close=False)


async def test_a_get_response_may_borrow_its_connection_once_its_chunked_headers_are_out(
    relay_settings: Settings,
) -> None:
    app = create_app(relay_settings)

    @app.api_route("/borrow", methods=["GET", "POST"])
    async def borrow(sized: bool = False) -> Response:
        return _Borrowing(sized=sized)

    async with _serve(app, relay_settings) as base, httpx.AsyncClient(base_url=base) as client:
        lent = await client.get("/borrow")
        assert lent.text == "lent\n"
        assert lent.headers["transfer-encoding"] == "chunked"
        assert (await client.get("/health")).status_code == 200  # the connection given back
        assert (await client.get("/borrow", params={"sized": True})).text == "asgi!\n"
        assert (await client.post("/borrow")).text == "asgi!\n"  # only GETs are offered it
