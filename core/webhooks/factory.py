"""The sink RELAY_WEBHOOK_* ask for: None when off; otherwise the queue the deployment allows."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from core.errors import ConfigurationError
from core.webhooks import formats
from core.webhooks.config import WebhookConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.provider import ChannelEvent
    from core.settings import Settings
    from core.stores import Store
    from core.webhooks.delivery import Sender, Sign
    from core.webhooks.sink import Sink


def signer(settings: Settings) -> Sign:
    """The function that makes a batch's body and headers in the configured format."""
    if settings.webhook_format == "standard":
        if settings.webhook_secret is None:
            raise ConfigurationError(
                "RELAY_WEBHOOK_SECRET: required when RELAY_WEBHOOK_FORMAT=standard"
            )
        secret = settings.webhook_secret.get_secret_value()
        try:
            raw = base64.b64decode(secret.removeprefix("whsec_") + "==", validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ConfigurationError("RELAY_WEBHOOK_SECRET: must be whsec_<base64>") from exc
        if len(raw) < 24:
            raise ConfigurationError("RELAY_WEBHOOK_SECRET: must decode to at least 24 bytes")

        def standard(events: Sequence[ChannelEvent], now: float) -> tuple[bytes, dict[str, str]]:
            return formats.standard_request(events, secret=secret, now=now)

        return standard
    key, app_secret = settings.app_key, settings.app_secret.get_secret_value()

    def pusher(events: Sequence[ChannelEvent], now: float) -> tuple[bytes, dict[str, str]]:
        return formats.pusher_request(events, key=key, secret=app_secret, now=now)

    return pusher


def sender(settings: Settings, config: WebhookConfig | None = None) -> Sender:
    """The HTTP sender for the configured URLs."""
    from core.webhooks.delivery import Sender

    config = config or WebhookConfig.from_settings(settings)
    if config is None:
        raise ConfigurationError("RELAY_WEBHOOK_URL: set it to send webhooks")
    return Sender(config, signer(settings))


def queue_kind(settings: Settings, *, on_lambda: bool = False) -> str:
    """memory, redis or sqs: what RELAY_WEBHOOK_QUEUE names, or what `auto` picks."""
    if settings.webhook_queue != "auto":
        return settings.webhook_queue
    if on_lambda and settings.webhook_sqs_queue:
        return "sqs"
    if settings.redis_url and (settings.store == "redis" or settings.backplane == "redis"):
        return "redis"
    return "memory"


def build_sink(
    settings: Settings, *, on_lambda: bool = False, store: Store | None = None
) -> Sink | None:
    """The sink for these settings, not started; None when webhooks are off. `store`, the
    relay's, is where the SQS sink notes returns (rejoins.py)."""
    config = WebhookConfig.from_settings(settings)
    if config is None:
        return None
    kind = queue_kind(settings, on_lambda=on_lambda)
    send = sender(settings, config)
    if kind == "redis":
        from core.webhooks.redis_stream import RedisStreamSink

        if not settings.redis_url:
            raise ConfigurationError("RELAY_REDIS_URL: required when RELAY_WEBHOOK_QUEUE=redis")
        # One stream per app, as the backplane's keys are (relay:bp:<app id>:).
        prefix = f"relay:webhooks:{settings.app_id}:"
        return RedisStreamSink(config, send, url=settings.redis_url, prefix=prefix)
    if kind == "sqs":
        from core.webhooks.sqs import SqsSink

        if not settings.webhook_sqs_queue:
            raise ConfigurationError("RELAY_WEBHOOK_SQS_QUEUE: required for the SQS queue")
        return SqsSink(config, queue=settings.webhook_sqs_queue, store=store)
    from core.webhooks.memory import MemorySink

    sink = MemorySink(config, send)
    sink.drain_seconds = settings.drain_seconds
    return sink
