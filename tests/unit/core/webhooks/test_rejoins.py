"""core/webhooks/rejoins.py on the memory store: which returns are noted, which leave a note
cancels, and which return answers it (the SQS path end to end: test_sqs.py, on moto)."""

from __future__ import annotations

from core.provider import ChannelEvent
from core.stores.memory import MemoryStore
from core.webhooks.filters import Filter
from core.webhooks.rejoins import Rejoins
from core.webhooks.schedule import Entry

T0 = 1_700_000_000_000


def at(kind: str, ms: int, user: str | None = "bob") -> ChannelEvent:
    return ChannelEvent(kind, "presence-room", T0 + ms, user_id=user)


def held(event: ChannelEvent) -> Entry:
    return Entry(event, due=event.time_ms / 1000 + 3, seq=1)


async def test_only_returns_whose_leave_is_wanted_are_noted() -> None:
    store = MemoryStore()
    rejoins = Rejoins(store, hold=3)
    events = [at("member_added", 1), at("channel_occupied", 1, None), at("client_event", 1)]
    await rejoins.note(events, Filter(kinds=["member_added", "channel_occupied"]))
    assert await rejoins.dropped([held(at("member_removed", 0))]) == []  # nothing noted
    await rejoins.note(events, Filter(kinds=["member_removed"]))
    leave = held(at("member_removed", 0))
    assert await rejoins.dropped([leave]) == [leave]
    assert await rejoins.dropped([held(at("channel_vacated", 0, None))]) == []


async def test_a_note_cancels_only_a_leave_it_followed_within_the_hold() -> None:
    rejoins = Rejoins(MemoryStore(), hold=3)
    await rejoins.note([at("member_added", 0)], Filter())
    same_time = held(at("member_removed", 0))
    before = held(at("member_removed", -3001))
    assert await rejoins.dropped([same_time, before]) == []
    inside = held(at("member_removed", -3000))
    assert await rejoins.dropped([inside]) == [inside]


async def test_only_the_first_return_after_a_dropped_leave_answers_it() -> None:
    rejoins = Rejoins(MemoryStore(), hold=3)
    await rejoins.note([at("member_added", 2500)], Filter())  # the latest of several returns
    assert len(await rejoins.dropped([held(at("member_removed", 0))])) == 1
    early = at("member_added", -10)  # before the leave: not its answer
    first, second = at("member_added", 1000), at("member_added", 2500)
    assert await rejoins.answered([early]) == [False]
    assert await rejoins.answered([first]) == [True]
    assert await rejoins.answered([second]) == [False]
    assert await rejoins.answered([first]) == [True]  # a redelivery of its batch
    assert await rejoins.answered([at("member_removed", 3000)]) == [False]
