"""When each queued event goes out: held events, their cancellation, per-channel order, batches.

Pusher holds member_removed a few seconds and drops it when the user is back on the channel in
that time, so a page reload or a network hiccup is no leave and join at the backend. The relay
does the same for member_removed (cancelled by that user's member_added on that channel) and for
channel_vacated (cancelled by channel_occupied): the pair disappears, and a reconnect is not news.

A channel's events leave in the order they were queued: an event behind a held one on the same
channel waits for it. Channels do not wait for each other. Pure logic on an injected `now`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from msgspec import Struct

if TYPE_CHECKING:
    from collections.abc import Callable

    from core.provider import ChannelEvent

HELD = frozenset({"member_removed", "channel_vacated"})
CANCELS = {"member_added": "member_removed", "channel_occupied": "channel_vacated"}


class Entry(Struct):
    """A queued event: when it may leave, the queue's reference to it (a stream id)."""

    event: ChannelEvent
    due: float
    seq: int
    ref: str | None = None


class Schedule:
    """The events waiting to be delivered, by channel."""

    def __init__(self, *, hold: float) -> None:
        self.hold = hold
        self._channels: dict[str, deque[Entry]] = {}
        self._seq = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, event: ChannelEvent, *, now: float, ref: str | None = None) -> list[Entry]:
        """Queue one event; the entries it cancelled (itself included), if any."""
        queue = self._channels.setdefault(event.channel, deque())
        undone = CANCELS.get(event.kind)
        if undone is not None:
            for held in reversed(queue):
                if held.event.kind == undone and held.event.user_id == event.user_id:
                    queue.remove(held)
                    self._size -= 1
                    if not queue:
                        del self._channels[event.channel]
                    return [held, Entry(event, now, self._next(), ref)]
        due = max(now, event.time_ms / 1000 + self.hold) if event.kind in HELD else now
        queue.append(Entry(event, due, self._next(), ref))
        self._size += 1
        return []

    def ready(
        self,
        now: float,
        *,
        limit: int,
        size: Callable[[Entry], int] | None = None,
        max_bytes: int = 0,
    ) -> list[Entry]:
        """Up to `limit` due events, oldest first, each channel's in order, taken off the
        schedule; with `size`, at most `max_bytes` of them (the first one whatever its size)."""
        heads = sorted((q[0].seq, name) for name, q in self._channels.items() if q[0].due <= now)
        batch: list[Entry] = []
        total = 0
        for _, name in heads:
            queue = self._channels[name]
            while queue and queue[0].due <= now and len(batch) < limit:
                if size is not None:
                    total += size(queue[0])
                    if batch and total > max_bytes:
                        limit = len(batch)
                        break
                batch.append(queue.popleft())
                self._size -= 1
            if not queue:
                del self._channels[name]
            if len(batch) >= limit:
                break
        batch.sort(key=lambda e: e.seq)
        return batch

    def waiting(self, kinds: frozenset[str]) -> list[Entry]:
        """The scheduled entries of these kinds, in the order they were queued."""
        found = [e for q in self._channels.values() for e in q if e.event.kind in kinds]
        return sorted(found, key=lambda e: e.seq)

    def discard(self, entries: list[Entry]) -> None:
        """Take these entries off the schedule (entries not on it are ignored)."""
        for entry in entries:
            queue = self._channels.get(entry.event.channel)
            if queue is not None and entry in queue:
                queue.remove(entry)
                self._size -= 1
                if not queue:
                    del self._channels[entry.event.channel]

    def next_due(self) -> float | None:
        """When the earliest waiting event falls due (None: nothing waits)."""
        return min((q[0].due for q in self._channels.values()), default=None)

    def clear(self) -> None:
        """Forget everything (a queue whose delivery moved to another process)."""
        self._channels.clear()
        self._size = 0

    def drop_oldest(self) -> Entry | None:
        """Take the oldest waiting event off the schedule (a bounded queue, full)."""
        if not self._channels:
            return None
        _, name = min((q[0].seq, name) for name, q in self._channels.items())
        queue = self._channels[name]
        entry = queue.popleft()
        self._size -= 1
        if not queue:
            del self._channels[name]
        return entry

    def _next(self) -> int:
        self._seq += 1
        return self._seq
