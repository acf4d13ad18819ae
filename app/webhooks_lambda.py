"""The webhook queue's consumer function on Lambda (serverless.yml: `webhooks`): it delivers one
SQS batch of channel events, a held leave checked against the returns noted in the relay's store
(core/webhooks/rejoins.py); an undelivered batch raises, so that SQS delivers it again and, after
maxReceiveCount, moves it to the dead-letter queue."""

from __future__ import annotations

import logging
from typing import Any

# First of the relay's imports: it puts the package's vendored dependencies on sys.path.
from app.lambda_handler import runtime

log = logging.getLogger(__name__)
_consumer: dict[str, Any] = {}  # the container's sender, its connections kept warm


def consume(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The SQS consumer function: deliver one batch of the webhook queue. An undelivered batch
    raises, so that SQS delivers it again, and after maxReceiveCount moves it to the DLQ."""
    from core.webhooks.config import WebhookConfig
    from core.webhooks.factory import sender
    from core.webhooks.sqs import consume as deliver

    rt = runtime()
    settings = rt.relay.settings
    config = WebhookConfig.from_settings(settings)
    if config is None:
        dropped = len(event["Records"])
        log.warning("webhooks: RELAY_WEBHOOK_URL is unset; %d events dropped", dropped)
        return {"delivered": 0}
    if "sender" not in _consumer:
        _consumer["sender"] = sender(settings, config)
    records = event["Records"]
    delivered = rt.run(deliver(records, config, _consumer["sender"], store=rt.relay.store))
    return {"delivered": delivered}
