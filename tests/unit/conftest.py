"""Fixtures for the in-process route, protocol and provider tests.

Names are prefixed (`relay_*`) or specific (`http`, `live_server`) so they cannot clash with the
fixtures of other unit test files.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import httpx
import pytest

from app.main import create_app
from core.settings import Settings
from core.tokens import mint_dev_token
from tests.servers import LiveServer, serve

if TYPE_CHECKING:
    import contextlib
    from collections.abc import AsyncIterator, Callable

    from fastapi import FastAPI

    from providers.local.hub import Delivery
    from providers.local.provider import LocalProvider

UNIT_SETTINGS = {
    "env": "test",
    "app_id": "4242",
    "app_key": "unit-key",
    "app_secret": "unit-app-secret-0123456789",
    "jwt_secret": "unit-jwt-secret-0123456789abcdef0123456789",
    "api_keys": "unit-api-key-0123456789",
    "sse_heartbeat_seconds": 0.2,
    "activity_timeout_seconds": 5,
}


@pytest.fixture
def relay_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Unit-test settings, with no RELAY_* variable of the environment leaking in."""
    for name in list(os.environ):
        if name.startswith("RELAY_"):
            monkeypatch.delenv(name)
    return Settings(**UNIT_SETTINGS)


@pytest.fixture
def relay_app(relay_settings: Settings) -> FastAPI:
    """The app on the local provider with the default policy."""
    return create_app(relay_settings)


@pytest.fixture
def relay_provider(relay_app: FastAPI) -> LocalProvider:
    """The local provider behind `relay_app` (its hub is where deliveries go)."""
    return cast("LocalProvider", relay_app.state.relay.provider)


@pytest.fixture
def relay_token(relay_settings: Settings) -> Callable[..., str]:
    """Mint a user token the relay accepts: `relay_token("alice", name="Alice")`."""

    def mint(user_id: str, name: str | None = None) -> str:
        return mint_dev_token(relay_settings, user_id=user_id, name=name)

    return mint


@pytest.fixture
def relay_api_key(relay_settings: Settings) -> str:
    """The backend API key the relay accepts."""
    return relay_settings.api_keys[0].get_secret_value()


@pytest.fixture
async def http(relay_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling `relay_app` in-process (the lifespan is not run)."""
    transport = httpx.ASGITransport(app=relay_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        yield client


@pytest.fixture
async def live_server(relay_app: FastAPI) -> AsyncIterator[LiveServer]:
    """`relay_app` served by uvicorn, for WebSocket and SSE streaming tests."""
    async with serve(relay_app) as server:
        yield server


@pytest.fixture
def relay_serve() -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[LiveServer]]:
    """Serve another app (a custom policy or settings) for the length of an `async with`."""
    return serve


@dataclass(eq=False)
class Recorder:
    """A hub subscriber that remembers every delivery handed to it."""

    socket_id: str
    channels: set[str] = field(default_factory=set)
    deliveries: list[Delivery] = field(default_factory=list)

    def deliver(self, delivery: Delivery) -> None:
        """Remember the delivery."""
        self.deliveries.append(delivery)

    @property
    def events(self) -> list[tuple[str, str, str]]:
        """(channel, event, data) of every delivery, in order."""
        return [(d.channel, d.event, d.data) for d in self.deliveries]


@pytest.fixture
def relay_listen(relay_provider: LocalProvider) -> Callable[..., Recorder]:
    """Subscribe a Recorder to channels of the app's hub: `relay_listen("news", "other")`."""
    counter = iter(range(1, 1_000_000))

    def listen(*channels: str, socket_id: str | None = None) -> Recorder:
        recorder = Recorder(socket_id or f"9999.{next(counter)}")
        for channel in channels:
            relay_provider.hub.subscribe(recorder, channel)
        return recorder

    return listen


async def eventually(predicate: Callable[[], bool], within: float = 2.0) -> None:
    """Poll `predicate` every 10 ms until it holds; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)
