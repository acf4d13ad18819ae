"""RELAY_WEBHOOK_* as one value, read from the relay's settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from msgspec import Struct

if TYPE_CHECKING:
    from core.settings import Settings

MAX_URLS = 10
MAX_BATCH_BYTES = 256 * 1024  # an encoded body; a single event larger than this goes alone


class WebhookConfig(Struct, frozen=True):
    """Where the events go, how they are signed, and how patiently they are delivered (no repr
    of the secrets: they stay in `Settings`' SecretStr until a request is signed)."""

    urls: tuple[str, ...]
    format: Literal["pusher", "standard"] = "pusher"
    channels: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    hold_seconds: float = 3.0
    batch_events: int = 50
    batch_bytes: int = MAX_BATCH_BYTES
    queue_events: int = 10_000
    timeout_seconds: float = 5.0
    attempts: int = 8
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig | None:
        """None when RELAY_WEBHOOK_URL is unset: webhooks are off."""
        if not settings.webhook_url:
            return None
        return cls(
            urls=settings.webhook_url,
            format=settings.webhook_format,
            channels=settings.webhook_channels,
            kinds=settings.webhook_events,
            hold_seconds=settings.webhook_hold_seconds,
            batch_events=settings.webhook_batch_events,
            queue_events=settings.webhook_queue_events,
            timeout_seconds=settings.webhook_timeout_seconds,
            attempts=settings.webhook_attempts,
        )
