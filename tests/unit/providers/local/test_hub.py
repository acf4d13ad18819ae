"""The local hub on its own: subscriptions, presence rosters, replay log and fan-out. The hub
records presence and says who joined first and who left last; announcing it is the session's
(tests/unit/providers/pusherproto/test_session.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.provider import Member, PresenceData
from providers.local.hub import Delivery, Hub
from providers.pusherproto.outcome import MEMBER_ADDED, MEMBER_REMOVED, Broadcast
from providers.pusherproto.port import Joined, Left
from tests.unit.conftest import Recorder


def test_public_subscription_has_no_roster_and_receives_deliveries() -> None:
    hub = Hub()
    sub = Recorder("1.1")
    assert hub.subscribe(sub, "news") == Joined(count=1)
    assert sub.channels == {"news"}
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


def test_a_user_joins_first_once_per_channel_not_per_socket() -> None:
    hub = Hub()
    watcher = Recorder("9.9")
    assert hub.subscribe(watcher, "presence-room", PresenceData("watcher", {})).first
    alice_tab1, alice_tab2 = Recorder("1.1"), Recorder("1.2")
    alice = PresenceData("alice", {"name": "Alice"})
    assert hub.subscribe(alice_tab1, "presence-room", alice).first
    assert not hub.subscribe(alice_tab2, "presence-room", alice).first
    assert hub.subscribe(Recorder("1.3"), "presence-other", alice).first
    # The hub announces nothing itself.
    assert watcher.deliveries == alice_tab1.deliveries == []


def test_a_user_leaves_last_only_with_its_last_socket() -> None:
    hub = Hub()
    watcher = Recorder("9.9")
    hub.subscribe(watcher, "presence-room", PresenceData("watcher", {}))
    tab1, tab2 = Recorder("1.1"), Recorder("1.2")
    hub.subscribe(tab1, "presence-room", PresenceData("alice", {}))
    hub.subscribe(tab2, "presence-room", PresenceData("alice", {}))

    assert hub.unsubscribe(tab1, "presence-room") == Left(None, 2)
    assert [m.user_id for m in hub.members("presence-room")] == ["watcher", "alice"]

    assert hub.remove(tab2) == [("presence-room", "alice")]
    assert [m.user_id for m in hub.members("presence-room")] == ["watcher"]
    assert watcher.deliveries == []


def test_roster_lists_every_present_user() -> None:
    hub = Hub()
    hub.subscribe(Recorder("1.1"), "presence-room", PresenceData("alice", {"name": "Alice"}))
    hub.subscribe(Recorder("1.2"), "presence-room", PresenceData("alice", {"name": "Alice"}))
    joined = hub.subscribe(Recorder("2.1"), "presence-room", PresenceData("bob", {"name": "Bob"}))
    assert joined == Joined(
        [Member("alice", {"name": "Alice"}), Member("bob", {"name": "Bob"})], True, count=3
    )
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
    joined = hub.subscribe(Recorder("2.1"), "presence-room", PresenceData("bob", {}))
    assert joined == Joined([Member("bob", {})], True, count=1)


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
    assert hub.subscriber_count("a") == 1
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


def test_sse_frame_carries_encoded_json_as_the_value_and_the_pusher_frame_as_a_string() -> None:
    hub = Hub()
    as_json = Delivery("e", "news", '{"n":1}', json=True)
    as_string = Delivery("e", "news", '{"n":1}')
    for delivery in (as_json, as_string):
        hub.deliver(delivery)
    assert _sse_data(as_json.sse_frame(hub.epoch)) == {"n": 1}
    assert _sse_data(as_string.sse_frame(hub.epoch)) == '{"n":1}'
    assert as_json.pusher_frame() == as_string.pusher_frame()
    assert orjson.loads(as_json.pusher_frame())["data"] == '{"n":1}'


def test_a_client_events_kind_reaches_the_sse_frame() -> None:
    hub = Hub()
    sent = Delivery.of(Broadcast("private-x", "client-e", '{"n":1}', json=True), sender="1.1")
    hub.deliver(sent)
    assert _sse_data(sent.sse_frame(hub.epoch)) == {"n": 1}


def _sse_data(frame: bytes) -> Any:
    return orjson.loads(frame.split(b"\n")[1].removeprefix(b"data: "))["data"]


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


def test_a_sessions_broadcast_excludes_its_sender_when_it_asks() -> None:
    typed = Broadcast("presence-room", "client-typing", "{}", user_id="alice")
    delivery = Delivery.of(typed, sender="1.1")
    assert (delivery.event, delivery.channel, delivery.data) == (
        "client-typing",
        "presence-room",
        "{}",
    )
    assert (delivery.exclude, delivery.user_id) == ("1.1", "alice")
    left = Broadcast("presence-room", MEMBER_REMOVED, "{}", exclude_sender=False)
    assert Delivery.of(left, sender="1.1").exclude is None


def test_client_event_frame_carries_user_id_on_presence() -> None:
    frame = Delivery("client-typing", "presence-room", "{}", user_id="alice").pusher_frame()
    assert orjson.loads(frame)["user_id"] == "alice"


def test_only_published_events_of_cache_channels_are_kept_for_thirty_minutes() -> None:
    now = [1000.0]
    hub = Hub(cache_channels=2, clock=lambda: now[0])
    hub.deliver(Delivery("update", "cache-a", "1"))
    hub.deliver(Delivery("client-typing", "cache-a", "typing", exclude="1.1"))
    hub.deliver(Delivery("pusher_internal:subscription_count", "cache-a", "{}"))
    hub.deliver(Delivery("update", "plain", "1"))
    kept = hub.cached("cache-a")
    assert kept is not None
    assert (kept.event, kept.data, kept.expires) == ("update", "1", 1000.0 + 30 * 60)
    assert kept.fresh(1000.0 + 30 * 60 - 1)
    assert not kept.fresh(1000.0 + 30 * 60)
    assert hub.cached("plain") is None
    # Past the cap, the channel written longest ago goes first.
    hub.deliver(Delivery("update", "private-cache-b", "2"))
    hub.deliver(Delivery("update", "presence-cache-c", "3"))
    assert hub.cached("cache-a") is None
    assert hub.cached("private-cache-b") is not None
    assert hub.cached("presence-cache-c") is not None


def test_signed_in_users_are_online_from_their_first_socket_to_their_last() -> None:
    hub = Hub()
    assert hub.sign_in("ann", "1.1") is True
    assert hub.sign_in("ann", "1.2") is False
    assert hub.online(["bob", "ann"]) == ["ann"]
    assert hub.sign_out("ann", "1.1") is False
    assert hub.sign_out("ann", "9.9") is False  # never signed in here
    assert hub.sign_out("ann", "1.2") is True
    assert hub.online(["ann"]) == []


def test_the_count_throttle_lets_one_announcement_through_per_span() -> None:
    hub = Hub()
    assert hub.throttle("news", now=100.0, span=5.0)
    assert not hub.throttle("news", now=104.9, span=5.0)
    assert hub.throttle("other", now=104.9, span=5.0)
    assert hub.throttle("news", now=105.0, span=5.0)
