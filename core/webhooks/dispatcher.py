"""The delivery loop: one batch at a time from the schedule to every URL.

One batch in flight keeps each channel's order through retries (a later event never overtakes
one being retried). A queue backend subclasses it to say where events come from and what a
delivered batch releases (memory.py: nothing; redis_stream.py: the stream's cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from core.webhooks.filters import Filter
from core.webhooks.formats import encoded_size
from core.webhooks.schedule import Entry, Schedule

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from core.provider import ChannelEvent
    from core.webhooks.config import WebhookConfig
    from core.webhooks.delivery import Sender

log = logging.getLogger(__name__)


class Dispatcher:
    """A schedule and the task that empties it."""

    def __init__(
        self, config: WebhookConfig, sender: Sender, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.sender = sender
        self.filter = Filter(config.channels, config.kinds)
        self.schedule = Schedule(hold=config.hold_seconds)
        self.clock = clock
        self.delivered = 0  # events, for the tests and the metrics
        self.undelivered = 0
        self.dropped = 0  # let go by a bounded queue when full (memory.py)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def enqueue(self, event: ChannelEvent, *, ref: str | None = None) -> None:
        """Schedule one event (a cancelled pair is released at once)."""
        cancelled = self.schedule.add(event, now=self.clock(), ref=ref)
        if cancelled:
            self.released(cancelled, delivered=True)
        self._wake.set()

    def next_batch(self, *, final: bool = False) -> list[Entry]:
        """The due events that fit one request (`final`: held ones too, on shutdown)."""
        config = self.config
        now = float("inf") if final else self.clock()

        return self.schedule.ready(
            now, limit=config.batch_events, size=_size, max_bytes=config.batch_bytes
        )

    async def deliver(self, batch: Sequence[Entry]) -> bool:
        """Send the batch's wanted events to every URL; True when every URL took it."""
        events = [e.event for e in batch if self.filter.kind(e.event.kind)]
        ok = True
        if events:
            answers = await self.sender.send(events)
            ok = all(a.delivered for a in answers)
            if ok:
                self.delivered += len(events)
            else:
                self.undelivered += len(events)
        self.released(batch, delivered=ok)
        return ok

    def released(self, entries: Sequence[Entry], *, delivered: bool) -> None:
        """The entries are done with (delivered, given up, or cancelled)."""

    async def run(self) -> None:
        """Deliver until stopped (or cancelled)."""
        while not self._stopping:
            batch = self.next_batch()
            if batch:
                await self.deliver(batch)
                continue
            due = self.schedule.next_due()
            timeout = None if due is None else max(0.0, due - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    def launch(self) -> None:
        """Run the loop in a task of its own."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self, *, drain: float) -> None:
        """Let the batch in flight finish (its retries included), then deliver what waits, held
        events too, all within `drain` seconds; what is left then is logged and dropped."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        try:
            async with asyncio.timeout(drain):
                if task is not None:
                    await task
                while batch := self.next_batch(final=True):
                    await self.deliver(batch)
        except TimeoutError:
            log.warning("webhooks: %d events left undelivered at shutdown", len(self.schedule))
        finally:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.sender.aclose()


def _size(entry: Entry) -> int:
    return encoded_size(entry.event)
