# ruff: noqa: F811 - the fixtures of test_session.py, imported by name
"""The Pusher features the session adds to subscriptions and sign-in: cache channels,
subscription counts and watchlists (issue 14), on the in-memory port of test_session.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.pusherproto import signing
from providers.pusherproto.cache import CACHE_SECONDS, CacheEntry
from providers.pusherproto.config import SessionConfig
from providers.pusherproto.outcome import (
    SUBSCRIPTION_COUNT,
    WATCHLIST_EVENTS,
    Broadcast,
    Outcome,
)
from tests.unit.providers.pusherproto.test_session import (  # noqa: F401 - fixtures
    KEY,
    NOW,
    SECRET,
    Channels,
    Client,
    Clock,
    channels,
    clock,
    config,
    connect,
    error,
    succeeded,
)


@pytest.fixture
def counting(config: SessionConfig) -> SessionConfig:
    """The test config with subscription counts on (as the relay's default)."""
    counted = SessionConfig.__new__(SessionConfig)
    for name in SessionConfig.__slots__:
        setattr(counted, name, getattr(config, name))
    counted.subscription_counts = True
    return counted


def frame(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(text)
    return parsed


def counts(outcome: Outcome) -> list[tuple[str, int, bool]]:
    """(channel, count, sender excluded) of each subscription_count broadcast."""
    return [
        (b.channel, orjson.loads(b.data)["subscription_count"], b.exclude_sender)
        for b in outcome.broadcasts
        if b.event == SUBSCRIPTION_COUNT
    ]


async def sign_in(client: Client, user_id: Any, watchlist: list[Any] | None = None) -> Outcome:
    user: dict[str, Any] = {"id": user_id, "user_info": {}}
    if watchlist is not None:
        user["watchlist"] = watchlist
    user_data = orjson.dumps(user).decode()
    auth = signing.user_auth(KEY, SECRET, socket_id=client.port.socket, user_data=user_data)
    return await client.send("pusher:signin", {"auth": auth, "user_data": user_data})


# -- cache channels ----------------------------------------------------------------------------
@pytest.mark.parametrize("channel", ["cache-news", "private-cache-room", "presence-cache-room"])
async def test_a_cache_channel_without_an_event_answers_cache_miss(
    config: SessionConfig, channels: Channels, channel: str
) -> None:
    client = connect(config, channels)
    if channel.startswith(("private-", "presence-")):
        member = {"user_id": "ann"} if channel.startswith("presence-") else None
        outcome = await client.subscribe_signed(channel, member)
    else:
        outcome = await client.subscribe(channel)
    succeeded(outcome, channel)
    assert frame(outcome.replies[1]) == {"event": "pusher:cache_miss", "channel": channel}
    assert len(outcome.replies) == 2


async def test_a_cache_channel_sends_its_last_event_after_the_answer_while_fresh(
    config: SessionConfig, channels: Channels, clock: Clock
) -> None:
    channels.cache["cache-news"] = CacheEntry("update", '{"n":2}', NOW + CACHE_SECONDS)
    first = connect(config, channels)
    outcome = await first.subscribe("cache-news")
    succeeded(outcome, "cache-news")
    assert frame(outcome.replies[1]) == {
        "event": "update",
        "channel": "cache-news",
        "data": '{"n":2}',
    }
    clock.now = NOW + CACHE_SECONDS  # 30 minutes later it is gone
    late = await connect(config, channels, "2.2").subscribe("cache-news")
    assert frame(late.replies[1])["event"] == "pusher:cache_miss"


async def test_a_plain_channel_never_asks_for_a_cached_event(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    outcome = await client.subscribe("news")
    assert len(outcome.replies) == 1
    assert not any(call.startswith("cached") for call in client.port.calls)


# -- subscription counts -----------------------------------------------------------------------
async def test_subscription_counts_go_to_every_subscriber_on_each_change(
    counting: SessionConfig, channels: Channels
) -> None:
    ann, bob = connect(counting, channels, "1.1"), connect(counting, channels, "2.2")
    assert counts(await ann.subscribe("news")) == [("news", 1, False)]
    assert counts(await bob.subscribe("news")) == [("news", 2, False)]
    assert counts(await bob.send("pusher:unsubscribe", {"channel": "news"})) == [("news", 1, False)]
    assert counts(await ann.session.close()) == [("news", 0, False)]


async def test_presence_and_the_protocols_own_channels_get_no_count(
    counting: SessionConfig, channels: Channels
) -> None:
    client = connect(counting, channels)
    assert counts(await client.subscribe_signed("presence-room", {"user_id": "ann"})) == []
    assert counts(await sign_in(client, "ann", ["bob"])) == []
    assert counts(await client.subscribe("#server-to-user-ann")) == []
    assert counts(await client.session.close()) == []


async def test_counts_are_off_when_the_config_says_so(
    config: SessionConfig, channels: Channels
) -> None:
    assert counts(await connect(config, channels).subscribe("news")) == []


async def test_above_a_hundred_subscribers_a_count_goes_out_once_per_five_seconds(
    counting: SessionConfig, channels: Channels, clock: Clock
) -> None:
    channels.subscribers["crowd"] = {f"0.{i}" for i in range(99)}
    assert counts(await connect(counting, channels, "1.1").subscribe("crowd")) == [
        ("crowd", 100, False)
    ]
    assert counts(await connect(counting, channels, "1.2").subscribe("crowd")) == [
        ("crowd", 101, False)
    ]
    assert counts(await connect(counting, channels, "1.3").subscribe("crowd")) == []
    clock.now += 5
    assert counts(await connect(counting, channels, "1.4").subscribe("crowd")) == [
        ("crowd", 103, False)
    ]


# -- sign-in and watchlists --------------------------------------------------------------------
async def test_signin_with_a_watchlist_tells_who_is_online_and_joins_their_watchers(
    config: SessionConfig, channels: Channels
) -> None:
    bob = connect(config, channels, "2.2")
    bob_online = await sign_in(bob, "bob")
    [announced] = bob_online.broadcasts  # Bob's first connection: his watchers hear it
    assert announced == Broadcast(
        "#watchers-bob",
        WATCHLIST_EVENTS,
        '{"events":[{"name":"online","user_ids":["bob"]}]}',
        json=True,
        channelless=True,
    )
    assert frame(announced.frame()) == {
        "event": WATCHLIST_EVENTS,
        "data": '{"events":[{"name":"online","user_ids":["bob"]}]}',
    }

    ann = connect(config, channels, "1.1")
    outcome = await sign_in(ann, "ann", ["bob", "cid", "bob"])
    assert frame(outcome.replies[0])["event"] == "pusher:signin_success"
    assert frame(outcome.replies[1]) == {
        "event": WATCHLIST_EVENTS,
        "data": '{"events":[{"name":"online","user_ids":["bob"]}]}',
    }
    assert {"#watchers-bob", "#watchers-cid"} <= ann.state.channels
    assert channels.subscribers["#watchers-bob"] == {"1.1"}


async def test_a_users_second_connection_is_not_announced_and_its_last_goes_offline(
    config: SessionConfig, channels: Channels
) -> None:
    tab1, tab2 = connect(config, channels, "1.1"), connect(config, channels, "1.2")
    assert len((await sign_in(tab1, "ann")).broadcasts) == 1
    assert (await sign_in(tab2, "ann")).broadcasts == []
    assert (await tab1.session.close()).broadcasts == []
    [offline] = (await tab2.session.close()).broadcasts
    assert offline.channel == "#watchers-ann"
    assert orjson.loads(offline.data) == {"events": [{"name": "offline", "user_ids": ["ann"]}]}


async def test_integer_user_ids_as_laravel_sends_them_name_the_same_users(
    config: SessionConfig, channels: Channels
) -> None:
    seven = connect(config, channels, "7.7")
    await sign_in(seven, 7)
    assert seven.state.signed_in == "7"
    watcher = connect(config, channels, "1.1")
    outcome = await sign_in(watcher, 1, [7, 8])
    assert orjson.loads(frame(outcome.replies[1])["data"])["events"][0]["user_ids"] == ["7"]


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"user_info": {}}, "user_data must hold an id (a string or an integer)"),
        ({"id": True}, "user_data must hold an id (a string or an integer)"),
        ({"id": "ann", "watchlist": "bob"}, "user_data's watchlist must be a list of user ids"),
        ({"id": "ann", "watchlist": [None]}, "user_data's watchlist must be a list of user ids"),
        (
            {"id": "ann", "watchlist": [str(i) for i in range(101)]},
            "a watchlist holds at most 100 user ids",
        ),
    ],
)
async def test_malformed_user_data_is_refused_and_changes_nothing(
    config: SessionConfig, channels: Channels, user: dict[str, Any], message: str
) -> None:
    client = connect(config, channels)
    user_data = orjson.dumps(user).decode()
    auth = signing.user_auth(KEY, SECRET, socket_id="1.1", user_data=user_data)
    outcome = await client.send("pusher:signin", {"auth": auth, "user_data": user_data})
    assert error(outcome) == {"message": message, "code": 4009}
    assert client.state.signed_in is None
    assert client.state.channels == set()
    assert channels.online == {}


async def test_a_second_signin_on_one_connection_is_refused(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    await sign_in(client, "ann")
    assert error(await sign_in(client, "bob"))["message"] == "This connection is signed in already"
    assert client.state.signed_in == "ann"
    assert set(channels.online) == {"ann"}


async def test_watchers_channels_do_not_count_against_the_subscription_cap(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    await sign_in(client, "ann", [f"u{i}" for i in range(50)])
    for i in range(5):  # the test config's cap
        succeeded(await client.subscribe(f"room{i}"), f"room{i}")
    assert len(client.state.channels) == 55
