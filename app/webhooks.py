"""Outbound webhooks in the shell: the process's sink started and stopped with the app, installed
on a Lambda cold start, and `relay webhooks test` (the SQS consumer function: webhooks_lambda.py).

Nothing here imports httpx, redis or boto3 until RELAY_WEBHOOK_URL is set: a relay without
webhooks pays one settings check at start-up.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from core.webhooks import sink as webhook_sink

if TYPE_CHECKING:
    from core.settings import Settings
    from core.stores import Store
    from core.webhooks.delivery import Answer, Sender
    from core.webhooks.sink import Sink

log = logging.getLogger(__name__)


async def start(settings: Settings) -> Sink | None:
    """Build, install and start the sink the settings ask for (None: webhooks are off)."""
    if not settings.webhook_url:
        return None
    from core.webhooks.factory import build_sink, queue_kind

    sink = build_sink(settings)
    if sink is None:
        return None
    webhook_sink.install(sink)
    await sink.start()
    log.info(
        "webhooks: %d URL(s), %s format, %s queue",
        len(settings.webhook_url),
        settings.webhook_format,
        queue_kind(settings),
    )
    return sink


async def stop(sink: Sink | None) -> None:
    """Deliver what the drain bound allows, and uninstall."""
    if sink is not None:
        try:
            await sink.aclose()
        finally:
            webhook_sink.uninstall(sink)


def install_on_lambda(settings: Settings, *, store: Store | None = None) -> None:
    """On a cold start: the handlers' events go to SQS (RELAY_WEBHOOK_SQS_QUEUE) before each
    invocation returns, their returns noted in the relay's `store` for the consumer's hold.
    Lambda freezes a container between invocations, so no other queue can deliver there: without
    the queue, webhooks are off (said once, at the cold start)."""
    if not settings.webhook_url:
        return
    from core.webhooks.factory import build_sink, queue_kind

    if queue_kind(settings, on_lambda=True) != "sqs":
        log.warning("webhooks: off on Lambda without RELAY_WEBHOOK_SQS_QUEUE (the SQS queue)")
        return
    sink = build_sink(settings, on_lambda=True, store=store)
    if sink is not None:
        webhook_sink.install(sink)


SAMPLE_CHANNEL = "presence-relay-webhook-test"


async def send_sample(settings: Settings, *, sender: Sender | None = None) -> list[Answer]:
    """POST one signed sample (member_added on a test channel) to each configured URL, once:
    what each answered."""
    from core.provider import ChannelEvent
    from core.webhooks.factory import sender as build_sender

    events = [
        ChannelEvent(
            "member_added", SAMPLE_CHANNEL, int(time.time() * 1000), user_id="relay-webhooks-test"
        )
    ]
    send = sender or build_sender(settings)
    try:
        return [await send.attempt(url, events) for url in settings.webhook_url]
    finally:
        await send.aclose()
