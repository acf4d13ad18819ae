"""Two `relay serve` processes sharing the real Redis: a burst split across both is limited as one.

Each process alone would accept a full burst; sharing the store, both together accept at most the
burst plus what refilled while the burst went through.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest
from redis import Redis

from tests.e2e.conftest import API_KEY, RELAY_ENV
from tests.e2e.harness import RelayProcess
from tests.integration.conftest import REDIS_URL as TEST_REDIS_URL
from tests.integration.conftest import redis_unreachable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

pytestmark = pytest.mark.e2e

# The test Redis (RELAY_TEST_REDIS_URL), in a database of its own since the store's key prefix is
# fixed: emptied before and after.
REDIS_URL = urlsplit(TEST_REDIS_URL)._replace(path="/7").geturl()
BURST = 10
PER_SECOND = 0.5
REQUESTS = 60


@pytest.fixture
def shared_redis() -> Iterator[Redis]:
    problem = redis_unreachable(REDIS_URL)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    client = Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        yield client
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
async def relays(shared_redis: Redis, tmp_path: Path) -> AsyncIterator[list[RelayProcess]]:
    """Two `relay serve` processes on the Redis store with a small publish limit."""
    env = {
        **RELAY_ENV,
        "RELAY_STORE": "redis",
        "RELAY_REDIS_URL": REDIS_URL,
        "RELAY_RATE_PUBLISH_PER_SECOND": str(PER_SECOND),
        "RELAY_RATE_PUBLISH_BURST": str(BURST),
        # Every request comes from 127.0.0.1: keep the IP's bucket out of the way. (Refused
        # requests still take from it, see tests/unit/core/test_ratelimit.py, which could let it
        # refuse some of the burst's first requests and blur what this test measures.)
        "RELAY_RATE_IP_MULTIPLIER": str(10 * REQUESTS),
    }
    started = await asyncio.gather(
        *(asyncio.to_thread(RelayProcess, env, tmp_path / f"relay-{i}.log") for i in range(2)),
        return_exceptions=True,
    )
    processes = [p for p in started if isinstance(p, RelayProcess)]
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield processes
    finally:
        for process in processes:
            process.stop()


async def test_a_burst_across_two_processes_is_limited_once(
    relays: list[RelayProcess], shared_redis: Redis
) -> None:
    a, b = relays
    headers = {"X-API-Key": API_KEY}
    async with httpx.AsyncClient(timeout=10) as client:

        async def publish(i: int) -> httpx.Response:
            base = (a, b)[i % 2].base
            event = {"name": "burst", "channel": "news", "data": str(i)}
            return await client.post(base + "/v1/events", json=event, headers=headers)

        started = time.monotonic()
        responses = await asyncio.gather(*(publish(i) for i in range(REQUESTS)))
        elapsed = time.monotonic() - started

    statuses = [r.status_code for r in responses]
    accepted = statuses.count(200)
    assert set(statuses) <= {200, 429}, [
        r.text for r in responses if r.status_code not in (200, 429)
    ]
    refilled = math.floor(elapsed * PER_SECOND)
    # One process alone would have accepted BURST; two with separate stores 2 x BURST.
    assert BURST <= accepted <= BURST + refilled, (accepted, elapsed)
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
    # The buckets live in the shared Redis, not in either process.
    assert any(key.startswith(b"relay:bucket:publish:") for key in shared_redis.scan_iter())
    # ... and each process answered part of the burst.
    for process in (a, b):
        assert "POST /v1/events" in process.log()
