"""The relay served in-process exactly as `relay serve` serves it (app/serving.py), on a free port.

Unlike conftest.serve (plain uvicorn), this runs the read deadlines, the connection cap, the
local provider's admission and the drain: what the slow-client, cap and shutdown suites test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httpx

from app import serving
from app.main import create_app
from core.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from providers.local.provider import LocalProvider

API_KEY = "caps-api-key-0123456789abcdef"
APP_KEY = "caps-key"
SETTINGS: dict[str, Any] = {
    "env": "test",
    "app_id": "8080",
    "app_key": APP_KEY,
    "app_secret": "caps-app-secret-0123456789abcdef",
    "jwt_secret": "caps-jwt-secret-0123456789abcdef-0123456789",
    "api_keys": API_KEY,
    "rate_limits": False,  # the caps under test, not the rate limiter, must answer
    "sse_heartbeat_seconds": 0.5,
    "activity_timeout_seconds": 30,
}
# /health "answers promptly": well under a second on a loaded 2-core machine.
PROMPT_SECONDS = 1.0


@dataclass
class Served:
    """One relay being served: its app, port and uvicorn server."""

    app: FastAPI
    port: int
    server: serving.RelayServer
    task: asyncio.Task[None]

    @property
    def base(self) -> str:
        """Base URL for HTTP requests."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        """The Pusher WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}/app/{APP_KEY}?protocol=7"

    @property
    def provider(self) -> LocalProvider:
        """The local provider behind the app."""
        return cast("LocalProvider", self.app.state.relay.provider)

    async def stop(self, within: float = 15) -> float:
        """Ask the server to stop as SIGTERM does; return how long it took."""
        started = time.monotonic()
        self.server.should_exit = True
        await asyncio.wait_for(asyncio.shield(self.task), within)
        return time.monotonic() - started


def settings(**overrides: Any) -> Settings:
    """The suite's settings, overridden by keyword (model_validate: no RELAY_* variable read)."""
    return Settings.model_validate({**SETTINGS, **overrides})


@contextlib.asynccontextmanager
async def relay_serve(**overrides: Any) -> AsyncIterator[Served]:
    """Serve the relay as `relay serve` does, with the suite's settings overridden by keyword."""
    built = settings(**overrides)
    app = create_app(built)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = serving.build_config(app, built, host="127.0.0.1", port=port, relay=app.state.relay)
    server = serving.RelayServer(
        config, provider=app.state.relay.provider, drain_seconds=built.drain_seconds
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    served = Served(app, port, server, task)
    try:
        async with asyncio.timeout(5):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield served
    finally:
        if not task.done():
            with contextlib.suppress(Exception):
                await served.stop()
        if not task.done():
            task.cancel()
        sock.close()


async def health_latency(base: str) -> float:
    """Seconds GET /health took on a fresh connection; fails unless it answered 200."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        answer = await client.get("/health")
    assert answer.status_code == 200, answer.text
    return time.monotonic() - started
