"""The schedule: held events and their cancellation, per-channel order, batches."""

from __future__ import annotations

from core.provider import ChannelEvent
from core.webhooks.schedule import Entry, Schedule

T0 = 1_800_000_000.0


def ev(
    kind: str, channel: str = "presence-room", user: str | None = None, at: float = T0
) -> ChannelEvent:
    return ChannelEvent(kind, channel, int(at * 1000), user_id=user)


def names(entries: list[Entry]) -> list[tuple[str, str, str | None]]:
    return [(e.event.kind, e.event.channel, e.event.user_id) for e in entries]


def test_member_removed_waits_for_the_hold() -> None:
    schedule = Schedule(hold=3.0)
    schedule.add(ev("member_removed", user="ann"), now=T0)
    assert schedule.ready(T0 + 2.9, limit=10) == []
    assert schedule.next_due() == T0 + 3.0
    assert names(schedule.ready(T0 + 3.0, limit=10)) == [("member_removed", "presence-room", "ann")]
    assert len(schedule) == 0


def test_a_rejoin_inside_the_hold_cancels_both_events() -> None:
    schedule = Schedule(hold=3.0)
    schedule.add(ev("member_removed", user="ann"), now=T0)
    schedule.add(ev("channel_vacated"), now=T0)
    cancelled = schedule.add(ev("channel_occupied", at=T0 + 1), now=T0 + 1)
    assert names(cancelled) == [
        ("channel_vacated", "presence-room", None),
        ("channel_occupied", "presence-room", None),
    ]
    schedule.add(ev("member_added", user="ann", at=T0 + 1), now=T0 + 1)
    assert len(schedule) == 0
    assert schedule.ready(T0 + 10, limit=10) == []


def test_another_users_join_cancels_nothing() -> None:
    schedule = Schedule(hold=3.0)
    schedule.add(ev("member_removed", user="ann"), now=T0)
    assert schedule.add(ev("member_added", user="bob"), now=T0) == []
    # bob's join waits behind ann's held leave: the channel's order holds
    assert schedule.ready(T0 + 1, limit=10) == []
    assert names(schedule.ready(T0 + 3, limit=10)) == [
        ("member_removed", "presence-room", "ann"),
        ("member_added", "presence-room", "bob"),
    ]


def test_channels_do_not_wait_for_each_other() -> None:
    schedule = Schedule(hold=3.0)
    schedule.add(ev("member_removed", "presence-a", "ann"), now=T0)
    schedule.add(ev("client_event", "private-b"), now=T0)
    assert names(schedule.ready(T0, limit=10)) == [("client_event", "private-b", None)]


def test_batches_are_oldest_first_and_bounded() -> None:
    schedule = Schedule(hold=0.0)
    for i in range(5):
        schedule.add(ev("client_event", f"private-{i % 2}", str(i)), now=T0)
    first = schedule.ready(T0, limit=3)
    assert [e.event.user_id for e in first] == ["0", "1", "2"] or [
        e.event.user_id for e in first
    ] == ["0", "2", "4"]
    rest = schedule.ready(T0, limit=10)
    assert sorted(e.event.user_id or "" for e in first + rest) == ["0", "1", "2", "3", "4"]
    for channel in ("private-0", "private-1"):
        order = [e.event.user_id for e in first + rest if e.event.channel == channel]
        assert order == sorted(order, key=lambda u: int(u or 0))


def test_a_batch_stops_where_the_size_would_not_fit() -> None:
    schedule = Schedule(hold=0.0)
    for i in range(4):
        schedule.add(ev("client_event", "private-a", str(i)), now=T0)
    batch = schedule.ready(T0, limit=10, size=lambda entry: 100, max_bytes=250)
    assert [e.event.user_id for e in batch] == ["0", "1"]
    assert len(schedule) == 2


def test_drop_oldest_takes_the_first_queued() -> None:
    schedule = Schedule(hold=0.0)
    schedule.add(ev("client_event", "private-b", "1"), now=T0)
    schedule.add(ev("client_event", "private-a", "2"), now=T0)
    dropped = schedule.drop_oldest()
    assert dropped is not None
    assert dropped.event.user_id == "1"
    assert len(schedule) == 1
