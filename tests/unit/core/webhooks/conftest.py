"""A receiver served over real HTTP, and configs pointing at it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from core.webhooks import formats
from core.webhooks.config import WebhookConfig
from tests.servers import serve
from tests.unit.core.webhooks.receiver import APP_KEY, APP_SECRET, Receiver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from core.provider import ChannelEvent


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """The backend, and its URL."""
    backend = Receiver()
    async with serve(backend.app) as server:
        yield backend, f"{server.http_url}/hooks"


def sign(events: Sequence[ChannelEvent], now: float) -> tuple[bytes, dict[str, str]]:
    """The Pusher format under the receiver's credentials."""
    return formats.pusher_request(events, key=APP_KEY, secret=APP_SECRET, now=now)


def config(url: str, **changes: object) -> WebhookConfig:
    """A config for tests: no hold unless asked, short waits."""
    values: dict[str, object] = {"urls": (url,), "hold_seconds": 0.0, "backoff_seconds": 0.01}
    values.update(changes)
    return WebhookConfig(**values)  # type: ignore[arg-type]
