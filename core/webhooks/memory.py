"""The bounded in-memory queue: the default when the relay runs without Redis.

What it holds is lost if the process dies (a crash, a SIGKILL, an out-of-memory kill); a graceful
stop delivers it within the drain bound. Past `queue_events` waiting events the oldest is dropped
(and counted in a log line), so a backend that is down costs bounded memory.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core.webhooks.dispatcher import Dispatcher

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.provider import ChannelEvent

log = logging.getLogger(__name__)


class MemorySink(Dispatcher):
    """A Sink whose queue is the dispatcher's own schedule."""

    drain_seconds = 10.0

    def put(self, events: Sequence[ChannelEvent]) -> None:
        """Filter and schedule; never waits."""
        for event in events:
            if not self.filter.keeps(event):
                continue
            if len(self.schedule) >= self.config.queue_events:
                self.schedule.drop_oldest()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("webhooks: queue full, %d events dropped so far", self.dropped)
            self.enqueue(event)

    async def settle(self) -> None:
        """Scheduled already."""

    async def start(self) -> None:
        """Start delivering."""
        self.launch()

    async def aclose(self) -> None:
        """Deliver what waits within the drain bound, then stop."""
        await self.stop(drain=self.drain_seconds)
