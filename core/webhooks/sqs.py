"""SQS on Lambda: the WebSocket handlers send their events to a FIFO queue before they return,
and a consumer function (app.webhooks.consume) delivers them; what it cannot deliver after the
queue's receive count goes to the dead-letter queue (serverless.yml, infra/webhooks-queue.yaml).

Each channel is a message group, so a channel's events reach the consumer in order. The consumer
runs the same schedule over each batch it receives: member_removed is held until it is
`hold_seconds` old and cancelled by that user's return in the same batch. A return that lands in
a later batch cancels it through the relay's store (rejoins.py): the handlers note each return
there as they queue it, and the consumer reads the note when the hold ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from core import aws
from core.provider import ChannelEvent
from core.webhooks.dispatcher import Dispatcher
from core.webhooks.filters import Filter
from core.webhooks.rejoins import Rejoins
from core.webhooks.schedule import CANCELS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from core.stores import Store
    from core.webhooks.config import WebhookConfig
    from core.webhooks.delivery import Sender

log = logging.getLogger(__name__)
SQS_BATCH = 10  # SendMessageBatch's limit
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ChannelEvent).decode


class SqsSink:
    """A Sink that buffers an invocation's events and sends them on `settle`; with the relay's
    store, it notes the returns there too (rejoins.py)."""

    def __init__(
        self,
        config: WebhookConfig,
        *,
        queue: str,
        client: Any = None,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.filter = Filter(config.channels, config.kinds)
        self.queue = queue  # a name (its URL asked once) or a URL
        self._url = queue if queue.startswith(("http://", "https://")) else None
        self._client = client
        self._rejoins = _rejoins(store, config)
        self._buffer: list[ChannelEvent] = []
        self._seq = 0

    def put(self, events: Sequence[ChannelEvent]) -> None:
        """Filter and buffer."""
        self._buffer.extend(e for e in events if self.filter.keeps(e))

    async def settle(self) -> None:
        """Send what is buffered, ten messages a call, and note its returns meanwhile; a failure
        is logged, not raised (the client's frame was handled; the events are lost, as the docs
        say)."""
        buffered, self._buffer = self._buffer, []
        if not buffered:
            return
        if self._rejoins is None:
            await self._send(buffered)
        else:
            await asyncio.gather(self._send(buffered), self._rejoins.note(buffered, self.filter))

    async def _send(self, buffered: list[ChannelEvent]) -> None:
        sqs = self._client or aws.client("sqs")
        fifo = self.queue.endswith(".fifo")
        try:
            url = await self._queue_url(sqs)
        except Exception as exc:
            log.warning("webhooks: %d events not queued (%s)", len(buffered), _cause(exc))
            return
        for start in range(0, len(buffered), SQS_BATCH):
            entries = []
            for i, event in enumerate(buffered[start : start + SQS_BATCH]):
                body = _encode(event).decode()
                self._seq += 1
                entry: dict[str, Any] = {"Id": str(i), "MessageBody": body}
                if fifo:
                    entry["MessageGroupId"] = hashlib.sha256(event.channel.encode()).hexdigest()
                    dedup = f"{body}{time.time_ns()}{self._seq}".encode()
                    entry["MessageDeduplicationId"] = hashlib.sha256(dedup).hexdigest()
                entries.append(entry)
            try:
                answer = await aws.call(
                    sqs,
                    "send_message_batch",
                    "webhook queue unreachable",
                    QueueUrl=url,
                    Entries=entries,
                )
            except Exception as exc:
                log.warning("webhooks: %d events not queued (%s)", len(entries), _cause(exc))
                continue
            if answer.get("Failed"):
                log.warning("webhooks: %d events not queued", len(answer["Failed"]))

    async def _queue_url(self, sqs: Any) -> str:
        if self._url is None:
            found = await aws.call(
                sqs, "get_queue_url", "webhook queue unknown", QueueName=self.queue
            )
            self._url = str(found["QueueUrl"])
        return self._url

    async def start(self) -> None:
        """Nothing runs in the background on Lambda."""

    async def aclose(self) -> None:
        """Send what is buffered."""
        await self.settle()


def _rejoins(store: Store | None, config: WebhookConfig) -> Rejoins | None:
    """Returns noted in the store, where there is one and a hold to cancel."""
    if store is None or config.hold_seconds <= 0:
        return None
    return Rejoins(store, hold=config.hold_seconds)


def _cause(exc: BaseException) -> str:
    # The AWS error code or the exception's type: never the request (it holds the events).
    cause = exc.__cause__ or exc
    return aws.error_code(cause) or type(cause).__name__


class Undelivered(Exception):
    """A batch of the queue was not delivered: SQS makes its messages visible again."""


async def consume(
    records: Sequence[dict[str, Any]],
    config: WebhookConfig,
    sender: Sender,
    *,
    store: Store | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Any] | None = None,
) -> int:
    """Deliver one SQS batch (an event source mapping's records), held events waited for;
    the number of events delivered. Raise Undelivered if a URL never took one. With the relay's
    store, a held leave whose return a handler noted there is dropped when due, and so is that
    return when it arrives (rejoins.py)."""
    dispatcher = Dispatcher(config, sender, clock=clock)
    for record in records:
        dispatcher.enqueue(_decode(record["body"]))
    rejoins = _rejoins(store, config)
    if rejoins is not None:
        # Returns no leave of this batch cancelled: the answer to one an earlier batch dropped?
        returns = dispatcher.schedule.waiting(frozenset(CANCELS))
        answered = await rejoins.answered([e.event for e in returns])
        gone = [e for e, yes in zip(returns, answered, strict=True) if yes]
        dispatcher.schedule.discard(gone)
        dispatcher.released(gone, delivered=True)
    wait = sleep or asyncio.sleep
    while len(dispatcher.schedule):
        batch = dispatcher.next_batch()
        if batch and rejoins is not None:
            gone = await rejoins.dropped(batch)
            batch = [e for e in batch if e not in gone]
            dispatcher.released(gone, delivered=True)
        if batch:
            if not await dispatcher.deliver(batch):
                raise Undelivered(f"{dispatcher.undelivered} events not delivered")
            continue
        due = dispatcher.schedule.next_due()
        if due is not None:
            await wait(max(0.0, min(config.hold_seconds, due - clock())))
    return dispatcher.delivered
