"""The Redis stream queue, on the real Redis (127.0.0.1:6379): durable, one deliverer at a time."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis

from core.provider import ChannelEvent
from core.webhooks.delivery import Sender
from core.webhooks.redis_stream import RedisStreamSink
from tests.unit.core.webhooks.conftest import config, sign

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.unit.core.webhooks.receiver import Receiver

REDIS_URL = os.environ.get("RELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    name = f"test:webhooks:{secrets.token_hex(4)}:"
    yield name
    redis = Redis.from_url(REDIS_URL)
    keys = [k async for k in redis.scan_iter(match=name + "*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


def ev(kind: str, channel: str = "presence-room", user: str | None = None) -> ChannelEvent:
    return ChannelEvent(kind, channel, int(time.time() * 1000), user_id=user)


def sink_for(url: str, prefix: str, **changes: object) -> RedisStreamSink:
    cfg = config(url, **changes)
    return RedisStreamSink(cfg, Sender(cfg, sign), url=REDIS_URL, prefix=prefix, lease_seconds=0.6)


async def test_events_from_two_processes_are_delivered_once_in_order(
    receiver: tuple[Receiver, str], prefix: str
) -> None:
    backend, url = receiver
    a, b = sink_for(url, prefix), sink_for(url, prefix)
    await a.start()
    await b.start()
    for i in range(10):
        (a if i % 2 else b).put([ev("client_event", "private-x", str(i))])
        await (a if i % 2 else b).settle()
    await backend.wait_for(10)
    await asyncio.sleep(0.3)
    assert [e["user_id"] for e in backend.events] == [str(i) for i in range(10)]
    assert [a.leading, b.leading].count(True) == 1
    await a.aclose()
    await b.aclose()


async def test_a_rejoin_on_another_process_cancels_the_leave(
    receiver: tuple[Receiver, str], prefix: str
) -> None:
    backend, url = receiver
    a, b = sink_for(url, prefix, hold_seconds=0.5), sink_for(url, prefix, hold_seconds=0.5)
    await a.start()
    await b.start()
    a.put([ev("member_removed", user="ann")])
    await a.settle()
    b.put([ev("member_added", user="ann"), ev("member_removed", user="bob")])
    await b.settle()
    await backend.wait_for(1, within=5)
    await asyncio.sleep(0.7)
    assert backend.kinds() == [("member_removed", "presence-room", "bob")]
    await a.aclose()
    await b.aclose()


async def test_events_wait_on_the_stream_while_no_process_delivers(
    receiver: tuple[Receiver, str], prefix: str
) -> None:
    backend, url = receiver
    producer = sink_for(url, prefix)
    producer.put([ev("channel_occupied", "news"), ev("channel_vacated", "news")])
    await producer.settle()
    await producer.aclose()  # never started delivering: as if it had crashed
    assert backend.events == []
    deliverer = sink_for(url, prefix)
    await deliverer.start()
    await backend.wait_for(2, within=5)
    assert backend.kinds() == [
        ("channel_occupied", "news", None),
        ("channel_vacated", "news", None),
    ]
    await asyncio.sleep(0.2)
    redis = Redis.from_url(REDIS_URL)
    cursor = await redis.get(prefix + "cursor")
    assert cursor is not None
    assert await redis.xlen(prefix + "stream") <= 1  # trimmed up to the cursor
    await redis.aclose()
    await deliverer.aclose()


async def test_a_batch_no_url_takes_goes_to_the_dead_stream(
    receiver: tuple[Receiver, str], prefix: str
) -> None:
    backend, url = receiver
    backend.failures = [400]
    sink = sink_for(url, prefix)
    await sink.start()
    sink.put([ev("cache_miss", "cache-x")])
    await sink.settle()
    redis = Redis.from_url(REDIS_URL)
    dead = await redis.xread({prefix + "dead": "0-0"}, block=5000)
    assert dead
    await redis.aclose()
    await sink.aclose()


async def test_the_next_process_takes_over_when_the_deliverer_stops(
    receiver: tuple[Receiver, str], prefix: str
) -> None:
    backend, url = receiver
    a = sink_for(url, prefix)
    await a.start()
    for _ in range(60):
        if a.leading:
            break
        await asyncio.sleep(0.05)
    assert a.leading
    b = sink_for(url, prefix)
    await b.start()
    await a.aclose()  # releases the lease
    b.put([ev("client_event", "private-y")])
    await b.settle()
    await backend.wait_for(1, within=5)
    assert b.leading
    await b.aclose()


async def test_while_redis_is_unreachable_events_wait_in_a_bounded_buffer() -> None:
    cfg = config("http://unused.test/h", queue_events=3)
    sink = RedisStreamSink(cfg, Sender(cfg, sign), url="redis://127.0.0.1:1/0")  # nobody there
    sink.drain_seconds = 0.5
    sink.put([ev("client_event", "private-z", str(i)) for i in range(5)])
    assert sink.dropped == 2
    await sink.aclose()  # gives up on the writer after the drain bound
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert all(t.done() for t in left)  # no writer retrying forever
