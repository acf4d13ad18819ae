"""The local hub on its own: subscriptions, presence rosters, replay log and fan-out."""

from __future__ import annotations

import orjson
import pytest

from core.provider import Member, PresenceData
from providers.local.hub import MEMBER_ADDED, MEMBER_REMOVED, Delivery, Hub
from tests.unit.conftest import Recorder


def _presence_events(sub: Recorder) -> list[tuple[str, dict[str, object]]]:
    return [(d.event, orjson.loads(d.data)) for d in sub.deliveries if d.internal]


def test_public_subscription_has_no_roster_and_receives_deliveries() -> None:
    hub = Hub()
    sub = Recorder("1.1")
    assert hub.subscribe(sub, "news") is None
    assert sub.channels == {"news"}
    assert hub.is_subscribed(sub, "news")
    assert hub.deliver(Delivery("update", "news", "x")) == 1
    assert sub.events == [("news", "update", "x")]
    assert hub.subscriber_count("news") == 1


def test_delivery_goes_only_to_the_channels_subscribers() -> None:
    hub = Hub()
    news, sport = Recorder("1.1"), Recorder("2.2")
    hub.subscribe(news, "news")
    hub.subscribe(sport, "sport")
    assert hub.deliver(Delivery("update", "news", "x")) == 1
    assert hub.deliver(Delivery("update", "weather", "x")) == 0
    assert sport.deliveries == []
    assert len(news.deliveries) == 1


def test_member_added_once_per_user_not_per_socket() -> None:
    hub = Hub()
    watcher = Recorder("9.9")
    hub.subscribe(watcher, "presence-room", PresenceData("watcher", {}))
    alice_tab1, alice_tab2 = Recorder("1.1"), Recorder("1.2")
    hub.subscribe(alice_tab1, "presence-room", PresenceData("alice", {"name": "Alice"}))
    hub.subscribe(alice_tab2, "presence-room", PresenceData("alice", {"name": "Alice"}))
    assert _presence_events(watcher) == [
        (MEMBER_ADDED, {"user_id": "alice", "user_info": {"name": "Alice"}})
    ]
    # The joining socket is not told about its own arrival.
    assert _presence_events(alice_tab1) == []


def test_member_removed_only_when_the_last_socket_leaves() -> None:
    hub = Hub()
    watcher = Recorder("9.9")
    hub.subscribe(watcher, "presence-room", PresenceData("watcher", {}))
    tab1, tab2 = Recorder("1.1"), Recorder("1.2")
    hub.subscribe(tab1, "presence-room", PresenceData("alice", {}))
    hub.subscribe(tab2, "presence-room", PresenceData("alice", {}))
    watcher.deliveries.clear()

    hub.unsubscribe(tab1, "presence-room")
    assert watcher.deliveries == []
    assert [m.user_id for m in hub.members("presence-room")] == ["watcher", "alice"]

    hub.remove(tab2)
    assert _presence_events(watcher) == [(MEMBER_REMOVED, {"user_id": "alice"})]
    assert [m.user_id for m in hub.members("presence-room")] == ["watcher"]


def test_roster_lists_every_present_user() -> None:
    hub = Hub()
    hub.subscribe(Recorder("1.1"), "presence-room", PresenceData("alice", {"name": "Alice"}))
    hub.subscribe(Recorder("1.2"), "presence-room", PresenceData("alice", {"name": "Alice"}))
    roster = hub.subscribe(Recorder("2.1"), "presence-room", PresenceData("bob", {"name": "Bob"}))
    assert roster == {
        "ids": ["alice", "bob"],
        "hash": {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}},
        "count": 2,
    }
    assert hub.members("presence-room") == [
        Member("alice", {"name": "Alice"}),
        Member("bob", {"name": "Bob"}),
    ]
    assert hub.subscriber_count("presence-room") == 3


def test_last_member_leaving_empties_the_presence_channel() -> None:
    hub = Hub()
    sub = Recorder("1.1")
    hub.subscribe(sub, "presence-room", PresenceData("alice", {}))
    hub.remove(sub)
    assert hub.members("presence-room") == []
    assert hub.subscriber_count("presence-room") == 0
    assert sub.channels == set()
    # A new member starts a fresh roster.
    roster = hub.subscribe(Recorder("2.1"), "presence-room", PresenceData("bob", {}))
    assert roster == {"ids": ["bob"], "hash": {"bob": {}}, "count": 1}


def test_remove_drops_every_subscription_of_a_connection() -> None:
    hub = Hub()
    sub = Recorder("1.1")
    for channel in ("a", "b", "c"):
        hub.subscribe(sub, channel)
    hub.remove(sub)
    assert sub.channels == set()
    assert all(hub.subscriber_count(c) == 0 for c in ("a", "b", "c"))
    assert hub.deliver(Delivery("e", "a", "x")) == 0


def test_unsubscribing_a_channel_never_subscribed_is_harmless() -> None:
    hub = Hub()
    sub = Recorder("1.1")
    hub.subscribe(sub, "a")
    hub.unsubscribe(sub, "b")
    assert hub.is_subscribed(sub, "a")
    assert sub.channels == {"a"}


def test_exclude_skips_exactly_one_socket() -> None:
    hub = Hub()
    sender, other = Recorder("1.1"), Recorder("2.2")
    hub.subscribe(sender, "news")
    hub.subscribe(other, "news")
    assert hub.deliver(Delivery("e", "news", "x", exclude="1.1")) == 1
    assert sender.deliveries == []
    assert other.events == [("news", "e", "x")]


def test_one_delivery_is_encoded_once_for_every_subscriber() -> None:
    hub = Hub()
    subs = [Recorder(f"{i}.1") for i in range(5)]
    for sub in subs:
        hub.subscribe(sub, "news")
    hub.deliver(Delivery("e", "news", '{"big":"payload"}'))
    deliveries = [sub.deliveries[0] for sub in subs]
    assert all(d is deliveries[0] for d in deliveries)
    pusher_frames = [d.pusher_frame() for d in deliveries]
    assert all(frame is pusher_frames[0] for frame in pusher_frames)
    sse_frames = [d.sse_frame(hub.epoch) for d in deliveries]
    assert all(frame is sse_frames[0] for frame in sse_frames)
    assert orjson.loads(pusher_frames[0]) == {
        "event": "e",
        "channel": "news",
        "data": '{"big":"payload"}',
    }


def test_sse_frame_carries_the_event_id() -> None:
    hub = Hub()
    delivery = Delivery("e", "news", "x")
    hub.deliver(delivery)
    frame = delivery.sse_frame(hub.epoch)
    lines = frame.decode().split("\n")
    assert lines[0] == f"id: {hub.event_id(delivery)}"
    assert orjson.loads(lines[1].removeprefix("data: ")) == {
        "type": "event",
        "channel": "news",
        "event": "e",
        "data": "x",
    }
    assert frame.endswith(b"\n\n")


def test_sequence_numbers_increase_across_channels() -> None:
    hub = Hub()
    first, second = Delivery("e", "a", "1"), Delivery("e", "b", "2")
    hub.deliver(first)
    hub.deliver(second)
    assert 0 < first.seq < second.seq
    assert hub.event_id(second) == f"{hub.epoch}-{second.seq}"


def test_two_hubs_have_different_epochs() -> None:
    assert Hub().epoch != Hub().epoch


def test_replay_is_bounded_per_channel() -> None:
    hub = Hub(replay_messages=3)
    for i in range(5):
        hub.deliver(Delivery("e", "news", str(i)))
    assert [d.data for d in hub.replay("news", 0)] == ["2", "3", "4"]


def test_replay_after_a_sequence_number() -> None:
    hub = Hub()
    deliveries = [Delivery("e", "news", str(i)) for i in range(4)]
    for d in deliveries:
        hub.deliver(d)
    assert [d.data for d in hub.replay("news", deliveries[1].seq)] == ["2", "3"]
    assert hub.replay("news", deliveries[-1].seq) == []


def test_replay_keeps_at_most_replay_channels_least_recently_used_first_out() -> None:
    hub = Hub(replay_channels=2)
    hub.deliver(Delivery("e", "a", "a1"))
    hub.deliver(Delivery("e", "b", "b1"))
    hub.deliver(Delivery("e", "a", "a2"))  # a is now the most recently used
    hub.deliver(Delivery("e", "c", "c1"))  # evicts b
    assert hub.replay("b", 0) == []
    assert [d.data for d in hub.replay("a", 0)] == ["a1", "a2"]
    assert [d.data for d in hub.replay("c", 0)] == ["c1"]


def test_replay_disabled_with_zero_messages() -> None:
    hub = Hub(replay_messages=0)
    sub = Recorder("1.1")
    hub.subscribe(sub, "news")
    hub.deliver(Delivery("e", "news", "x"))
    assert hub.replay("news", 0) == []
    assert len(sub.deliveries) == 1


def test_presence_bookkeeping_is_not_remembered() -> None:
    hub = Hub()
    hub.subscribe(Recorder("1.1"), "presence-room", PresenceData("alice", {}))
    hub.subscribe(Recorder("2.1"), "presence-room", PresenceData("bob", {}))
    assert hub.replay("presence-room", 0) == []


@pytest.mark.parametrize("event", [MEMBER_ADDED, MEMBER_REMOVED])
def test_internal_deliveries_are_flagged(event: str) -> None:
    assert Delivery(event, "presence-room", "{}").internal
    assert not Delivery("client-typing", "presence-room", "{}").internal


def test_client_event_frame_carries_user_id_on_presence() -> None:
    frame = Delivery("client-typing", "presence-room", "{}", user_id="alice").pusher_frame()
    assert orjson.loads(frame)["user_id"] == "alice"
