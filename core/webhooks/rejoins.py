"""The member_removed hold across SQS batches: returns noted in the relay's store.

On Lambda the consumer holds a leave (member_removed, channel_vacated) until it is
`hold_seconds` old, but the return that cancels it may be sent to the queue after the consumer
received the leave. The queue is FIFO with a message group per channel, and SQS hands out no
more of a group while a batch of it is in flight: the return cannot reach the consumer that
holds the leave, only the next one, after the leave was delivered. (FIFO queues take no
per-message DelaySeconds, so the leave cannot wait in the queue either.) So the return is also
noted in the store (DynamoDB on Lambda), where the holding consumer looks when the hold ends:

    returned:<kind>:<channel>:<user>    a handler, as it queues a member_added (channel_occupied):
                                        that event's time_ms (the latest return)
    cancelled:<kind>:<channel>:<user>   the consumer, as it drops a held leave for a return the
                                        store told of: `<leave's time_ms>`, then
                                        `<leave's>:<return's>` once that return arrived

A held leave whose user (channel) returned after it and within the hold is dropped; the next
return of that user on that channel to reach a consumer, which SQS's order per group makes the
one that answers the leave, is dropped too, so the pair disappears as it does in one batch.
When the note says less (it was written after the hold ended, or a later return replaced it),
both events are delivered: a reconnect seen, never a leave lost. A store failure does the same.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from core.webhooks.schedule import CANCELS, HELD

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.provider import ChannelEvent
    from core.stores import Store
    from core.webhooks.filters import Filter
    from core.webhooks.schedule import Entry

log = logging.getLogger(__name__)

# As long as an event may wait in the queue (infra/webhooks-queue.yaml's retention), so a note
# outlives a backlog: a leave checked late still finds the return that followed it.
NOTE_TTL = 86_400.0
RETURNED, CANCELLED = "webhooks:returned:", "webhooks:cancelled:"
_ANSWERS = {held: back for back, held in CANCELS.items()}  # member_removed -> member_added


def _key(prefix: str, kind: str, event: ChannelEvent) -> str:
    # Channel names hold no ':'; the user id, which may, comes last.
    return f"{prefix}{kind}:{event.channel}:{event.user_id or ''}"


class Rejoins:
    """Returns noted by the handlers, read by the consumer when a held leave is due."""

    def __init__(self, store: Store, *, hold: float) -> None:
        self.store = store
        self.hold_ms = int(hold * 1000)

    async def note(self, events: Sequence[ChannelEvent], wanted: Filter) -> None:
        """A handler's side: note each return whose leave the backend wants (one write each;
        a failure is logged, and such a reconnect is seen as a leave and a return)."""
        latest = {  # one write per user and channel: its latest return
            _key(RETURNED, e.kind, e): e.time_ms
            for e in events
            if e.kind in CANCELS and wanted.kind(CANCELS[e.kind])
        }
        if not latest:
            return
        found = await asyncio.gather(
            *(self.store.set(k, b"%d" % ms, ttl=NOTE_TTL) for k, ms in latest.items()),
            return_exceptions=True,
        )
        failed = sum(isinstance(f, BaseException) for f in found)
        if failed:
            log.warning("webhooks: %d returns not noted in the store", failed)

    async def dropped(self, entries: Sequence[Entry]) -> list[Entry]:
        """The consumer's side, when held leaves fall due: those whose user (channel) returned
        within the hold, each marked so that the return it answers is dropped on arrival."""
        held = [e for e in entries if e.event.kind in HELD]
        if not held:
            return []
        found = await asyncio.gather(*(self._returned(e.event) for e in held))
        return [entry for entry, back in zip(held, found, strict=True) if back]

    async def _returned(self, leave: ChannelEvent) -> bool:
        back = _ANSWERS[leave.kind]
        try:
            note = await self.store.get(_key(RETURNED, back, leave))
            if note is None or not leave.time_ms < int(note) <= leave.time_ms + self.hold_ms:
                return False
            await self.store.set(_key(CANCELLED, back, leave), b"%d" % leave.time_ms, ttl=NOTE_TTL)
        except Exception as exc:
            log.warning(
                "webhooks: a held %s delivered, the store unread (%s)", leave.kind, _name(exc)
            )
            return False
        return True

    async def answered(self, events: Sequence[ChannelEvent]) -> list[bool]:
        """The consumer's side, as returns arrive: for each event, whether it is the return
        that answers a leave an earlier batch dropped (drop it too). Kept on a redelivery."""
        return list(await asyncio.gather(*(self._answers(e) for e in events)))

    async def _answers(self, event: ChannelEvent) -> bool:
        if event.kind not in CANCELS:
            return False
        key = _key(CANCELLED, event.kind, event)
        try:
            note = await self.store.get(key)
            if note is None:
                return False
            leave, _, answer = note.decode().partition(":")
            if answer:  # the leave's return came already: only that one again (a redelivery)
                return answer == str(event.time_ms)
            if event.time_ms <= int(leave):
                return False
            await self.store.set(key, f"{leave}:{event.time_ms}".encode(), ttl=NOTE_TTL)
        except Exception as exc:
            log.warning("webhooks: a %s delivered, the store unread (%s)", event.kind, _name(exc))
            return False
        return True


def _name(exc: BaseException) -> str:
    # The exception's type and its cause's: never its text (it may carry the key, a user id).
    cause = exc.__cause__
    return type(exc).__name__ if cause is None else f"{type(exc).__name__}: {type(cause).__name__}"
