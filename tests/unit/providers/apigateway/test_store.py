"""The DynamoDB store under moto, with the tables deployed from infra/ by CloudFormation."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from providers.apigateway.records import Connection
from providers.apigateway.settings import ApiGatewaySettings
from providers.apigateway.store import Conflict, Store
from providers.pusherproto.port import Counter
from providers.pusherproto.state import Window
from tests.e2e.apigw_support import PREFIX, aws_environment, deploy_infra

if TYPE_CHECKING:
    from collections.abc import Iterator

NOW = 1_800_000_000


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    aws_environment(monkeypatch)
    with mock_aws():
        deploy_infra()
        yield Store(ApiGatewaySettings(table_prefix=PREFIX), clock=lambda: NOW)


def conn(connection_id: str, user: str | None = None, *, expires_at: int = NOW + 60) -> Connection:
    return Connection(connection_id, f"1.{len(connection_id)}", expires_at, user_id=user)


def test_infra_tables_have_ttl_and_on_demand_billing(store: Store) -> None:
    client = boto3.client("dynamodb")
    names = client.list_tables()["TableNames"]
    assert sorted(names) == [
        f"{PREFIX}-{t}" for t in ("connections", "presence", "state", "subscriptions")
    ]
    for name in names:
        table = client.describe_table(TableName=name)["Table"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    keys = client.describe_table(TableName=f"{PREFIX}-subscriptions")["Table"]["KeySchema"]
    assert [(k["AttributeName"], k["KeyType"]) for k in keys] == [
        ("channel", "HASH"),
        ("connection_id", "RANGE"),
    ]


async def test_connection_round_trip_and_channels(store: Store) -> None:
    await store.add_connection(
        Connection("c1", "11.22", NOW + 60, user_id="ann", token_expires=NOW + 30)
    )
    await store.track_channel("c1", "news")
    await store.track_channel("c1", "private-x")
    await store.untrack_channel("c1", "news")
    await store.sign_in("c1", "ann")
    found = await store.connection("c1")
    assert found == Connection(
        "c1",
        "11.22",
        NOW + 60,
        user_id="ann",
        token_expires=NOW + 30,
        signed_in="ann",
        channels=frozenset({"private-x"}),
    )
    removed = await store.remove_connection("c1")
    assert removed is not None
    assert removed.channels == {"private-x"}
    assert await store.remove_connection("c1") is None  # a second cleanup finds nothing
    assert await store.connection("c1") is None
    with pytest.raises(Conflict):
        await store.track_channel("c1", "late")  # never recreates a removed connection
    await store.untrack_channel("c1", "late")  # quietly nothing


async def test_expired_rows_are_not_read(store: Store) -> None:
    await store.add_connection(conn("old", expires_at=NOW - 1))
    await store.subscribe("news", conn("old", expires_at=NOW - 1), None)
    await store.subscribe("news", conn("new"), None)
    assert await store.connection("old") is None
    assert [
        s.connection_id
        for p in [p async for p in store.subscribers("news", page_size=10)]
        for s in p
    ] == ["new"]


async def test_subscribers_come_in_query_pages(store: Store) -> None:
    for i in range(7):
        await store.subscribe("big", conn(f"c{i}"), None)
    await store.subscribe("other", conn("x"), None)
    pages = [page async for page in store.subscribers("big", page_size=3)]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(s.connection_id for p in pages for s in p) == [f"c{i}" for i in range(7)]
    assert await store.count("big") == 7
    assert await store.subscription("big", "c4") is not None
    gone = await store.unsubscribe("big", "c4")
    assert gone is not None
    assert gone.socket_id == "1.2"
    assert await store.unsubscribe("big", "c4") is None
    assert await store.count("big") == 6


async def test_presence_counts_users_not_connections(store: Store) -> None:
    ann1, ann2, ben = conn("a1", "ann"), conn("a2", "ann"), conn("b1", "ben")
    assert await store.join("presence-x", "ann", {"name": "Ann"}, ann1) is True
    assert await store.join("presence-x", "ann", {"name": "Ann"}, ann2) is False
    assert await store.join("presence-x", "ben", {}, ben) is True
    assert await store.members("presence-x") == [("ann", {"name": "Ann"}), ("ben", {})]
    assert await store.leave("presence-x", "ann", "a1") is False  # Ann is still here via a2
    assert await store.leave("presence-x", "ann", "a1") is False  # not a member through a1
    assert await store.leave("presence-x", "ann", "a2") is True
    assert await store.leave("presence-x", "nobody", "zz") is False
    assert await store.members("presence-x") == [("ben", {})]
    assert await store.join("presence-x", "ann", {"name": "Ann"}, ann1) is True  # back again


async def test_counters_count_in_a_window_that_opens_with_its_first_count(store: Store) -> None:
    await store.add_connection(conn("c1"))

    async def count(now: float, counter: Counter = Counter.CLIENT_EVENTS) -> bool:
        return await store.count_in_window("c1", counter, now=now, span=1.0, limit=3)

    assert [await count(100.5) for _ in range(4)] == [True, True, True, False]
    assert not await count(101.4)  # the window opened at 100.5 lasts a second
    assert await count(101.5)  # a new window
    assert await count(100.5, Counter.INVALID_FRAMES)  # each counter has its own window
    found = await store.connection("c1")
    assert found is not None
    assert found.client_events == Window(101.5, 1)
    assert found.invalid_frames == Window(100.5, 1)
    assert not await store.count_in_window(
        "gone", Counter.CLIENT_EVENTS, now=100, span=1.0, limit=3
    )


async def test_invocations_opening_a_window_at_once_all_count(store: Store) -> None:
    # API Gateway runs a socket's frames concurrently: on a fresh connection, all of them find
    # no window; one opens it and the others must count in it, not take it for full.
    await store.add_connection(conn("c1"))
    for attempt in range(5):
        now = 200.0 + 10 * attempt
        counted = await asyncio.gather(
            *(
                store.count_in_window("c1", Counter.CLIENT_EVENTS, now=now, span=1.0, limit=10)
                for _ in range(4)
            )
        )
        assert counted == [True] * 4, attempt
        found = await store.connection("c1")
        assert found is not None
        # The window opened now. (Its count is not asserted: moto, unlike DynamoDB, does not
        # apply concurrent conditional updates atomically, so one increment may be lost here.)
        assert found.client_events.since == now


async def test_presence_members_are_tracked_on_the_connection(store: Store) -> None:
    await store.add_connection(conn("c1"))
    await store.track_channel("c1", "presence-a", "ann")
    await store.track_channel("c1", "presence-b", "ann\nwith a newline")
    await store.track_channel("c1", "news")
    found = await store.connection("c1")
    assert found is not None
    assert found.channels == {"presence-a", "presence-b", "news"}
    assert found.members == {"presence-a": "ann", "presence-b": "ann\nwith a newline"}
    await store.untrack_channel("c1", "presence-a", "ann")
    found = await store.connection("c1")
    assert found is not None
    assert found.members == {"presence-b": "ann\nwith a newline"}


# -- the Pusher parity rows (issue 14) ---------------------------------------------------------
async def test_the_count_row_counts_each_connection_once_and_stays_out_of_fan_out(
    store: Store,
) -> None:
    assert await store.subscribe("news", conn("c1"), None) == 1
    assert await store.subscribe("news", conn("c1"), None) == 1  # a refresh is no new subscriber
    assert await store.subscribe("news", conn("c2"), None) == 2
    assert await store.subscribe("presence-x", conn("c3"), "ann") == 1
    pages = [page async for page in store.subscribers("news", page_size=1)]
    assert [[s.connection_id for s in p] for p in pages] == [["c1"], ["c2"]]
    assert await store.unsubscribe("news", "c1") is not None
    assert await store.uncount("news") == 1
    assert await store.channel_counts() == {"news": 1, "presence-x": 1}
    assert await store.channel_counts("presence-") == {"presence-x": 1}
    assert await store.unsubscribe("news", "c2") is not None
    assert await store.uncount("news") == 0
    assert await store.channel_counts() == {"presence-x": 1}


async def test_one_count_announcement_per_span(store: Store) -> None:
    # One after another: moto applies concurrent conditional writes without DynamoDB's atomicity.
    turns = [await store.throttle("news", now=100.0, span=5.0) for _ in range(3)]
    assert turns == [True, False, False]
    assert not await store.throttle("news", now=104.9, span=5.0)
    assert await store.throttle("news", now=105.0, span=5.0)
    assert await store.throttle("other", now=100.0, span=5.0)


async def test_a_cache_channels_event_is_kept_with_its_expiry(store: Store) -> None:
    assert await store.cached("cache-news") is None
    await store.keep("cache-news", "update", '{"n":1}', until=NOW + 1800)
    await store.keep("cache-news", "update", '{"n":2}', until=NOW + 1801)
    kept = await store.cached("cache-news")
    assert kept is not None
    assert (kept.event, kept.data, kept.expires) == ("update", '{"n":2}', NOW + 1801)
    assert [p async for p in store.subscribers("cache-news", page_size=10)] == []


async def test_online_users_are_the_live_ones_with_a_connection(store: Store) -> None:
    assert await store.join("#online", "ann", {}, conn("a1")) is True
    assert await store.join("#online", "ann", {}, conn("a2")) is False
    await store.join("#online", "old", {}, conn("o1", expires_at=NOW - 1))
    ids = ["bob", "ann", "old"] + [f"u{i}" for i in range(150)]  # past one BatchGetItem
    assert await store.online(ids) == ["ann"]
    assert await store.leave("#online", "ann", "a1") is False
    assert await store.leave("#online", "ann", "a2") is True
    assert await store.online(["ann"]) == []
