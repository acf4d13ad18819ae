"""One contract for every store backend (core/stores): memory, the real Redis, DynamoDB on moto.

Each test gets a fresh store and its own key namespace, so tests never see each other's keys and
the Redis keys of a run (one unique prefix) are deleted at the end of the session.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core import aws
from core.errors import (
    ConfigurationError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    TimeoutReplayed,
)
from core.idempotency import Idempotency
from core.settings import Settings
from core.stores import create_store
from core.stores.base import Bucket, bucket_ttl
from core.stores.dynamodb import DynamoStore
from core.stores.memory import MemoryStore
from core.stores.redis import MAX_CONNECTIONS, RedisStore, connect
from tests.integration.conftest import AWS_ENV, TABLE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from core.stores.base import Store

BACKENDS = ("memory", "redis", "dynamodb")
ROOT = Path(__file__).resolve().parents[2]
SLOW = 0.001  # tokens per second: nothing refills during a test
TOLERANCE = 0.05  # seconds of slack for round trips between the calls of a test
CONTENDERS = 20  # concurrent takes on one bucket of BURST tokens
SHORT_TTL = 0.6  # long enough for a few round trips to a loaded moto, short enough to wait out


@pytest.fixture(autouse=True)
def _no_relay_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read RELAY_* variables: none of the environment's may leak in."""
    for name in list(os.environ):
        if name.startswith("RELAY_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A fresh store of each backend."""
    backend: Store
    if request.param == "memory":
        backend = MemoryStore()
    elif request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        backend = RedisStore(url, prefix=request.getfixturevalue("redis_prefix"))
    else:
        backend = DynamoStore(TABLE, client=request.getfixturevalue("dynamodb"))
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.fixture
def ns() -> str:
    """A key namespace of this test alone."""
    return f"t{uuid.uuid4().hex[:12]}:"


# --- keys with a time to live ------------------------------------------------------------------


async def test_get_of_a_missing_key_is_none(store: Store, ns: str) -> None:
    assert await store.get(ns + "nothing") is None


async def test_set_then_get_then_delete(store: Store, ns: str) -> None:
    await store.set(ns + "k", b"one", ttl=60)
    assert await store.get(ns + "k") == b"one"
    await store.set(ns + "k", b"two", ttl=60)
    assert await store.get(ns + "k") == b"two"
    await store.delete(ns + "k")
    assert await store.get(ns + "k") is None
    await store.delete(ns + "k")  # deleting an absent key is fine
    assert await store.get(ns + "k") is None


async def test_values_are_bytes_kept_exactly(store: Store, ns: str) -> None:
    value = bytes(range(256)) + '{"é": "✓"}'.encode()
    await store.set(ns + "bin", value, ttl=60)
    assert await store.get(ns + "bin") == value


async def test_keys_are_independent(store: Store, ns: str) -> None:
    await store.set(ns + "a", b"A", ttl=60)
    await store.set(ns + "b", b"B", ttl=60)
    await store.delete(ns + "a")
    assert await store.get(ns + "a") is None
    assert await store.get(ns + "b") == b"B"


async def test_a_value_expires_after_its_ttl(store: Store, ns: str) -> None:
    await store.set(ns + "short", b"v", ttl=SHORT_TTL)
    await store.set(ns + "long", b"v", ttl=60)
    assert await store.get(ns + "short") == b"v"
    await asyncio.sleep(SHORT_TTL + 0.15)
    assert await store.get(ns + "short") is None
    assert await store.get(ns + "long") == b"v"


async def test_put_if_absent_stores_once_and_returns_the_live_value(store: Store, ns: str) -> None:
    assert await store.put_if_absent(ns + "k", b"first", ttl=60) is None
    assert await store.put_if_absent(ns + "k", b"second", ttl=60) == b"first"
    assert await store.get(ns + "k") == b"first"


async def test_put_if_absent_after_delete_claims_again(store: Store, ns: str) -> None:
    assert await store.put_if_absent(ns + "k", b"first", ttl=60) is None
    await store.delete(ns + "k")
    assert await store.put_if_absent(ns + "k", b"again", ttl=60) is None
    assert await store.get(ns + "k") == b"again"


async def test_an_expired_value_can_be_claimed_again(store: Store, ns: str) -> None:
    assert await store.put_if_absent(ns + "k", b"old", ttl=SHORT_TTL) is None
    assert await store.put_if_absent(ns + "k", b"early", ttl=60) == b"old"
    await asyncio.sleep(SHORT_TTL + 0.15)
    assert await store.put_if_absent(ns + "k", b"new", ttl=60) is None
    assert await store.get(ns + "k") == b"new"


async def test_put_if_absent_is_atomic_under_concurrency(store: Store, ns: str) -> None:
    values = [f"claim-{i}".encode() for i in range(50)]
    results = await asyncio.gather(
        *(store.put_if_absent(ns + "race", value, ttl=60) for value in values)
    )
    winners = [value for value, result in zip(values, results, strict=True) if result is None]
    assert len(winners) == 1, results
    # Every loser was told the winner's value, and the winner's value is what stays.
    assert {result for result in results if result is not None} == {winners[0]}
    assert await store.get(ns + "race") == winners[0]


async def test_set_replaces_the_ttl(store: Store, ns: str) -> None:
    await store.set(ns + "k", b"v", ttl=SHORT_TTL)
    await store.set(ns + "k", b"v2", ttl=60)
    await asyncio.sleep(SHORT_TTL + 0.15)
    assert await store.get(ns + "k") == b"v2"


# --- token buckets -----------------------------------------------------------------------------


async def test_a_bucket_starts_full_then_refuses_with_the_wait(store: Store, ns: str) -> None:
    rate, burst = 2.0, 5
    started = time.monotonic()
    for _ in range(burst):
        assert await store.take(ns + "b", rate=rate, burst=burst) == 0.0
    wait = await store.take(ns + "b", rate=rate, burst=burst)
    elapsed = time.monotonic() - started
    # One token at 2 per second takes 0.5 s, minus what refilled while the burst went through.
    assert 0.5 - elapsed * rate - TOLERANCE <= wait <= 0.5 + TOLERANCE, (wait, elapsed)
    assert wait > 0


async def test_a_bucket_refills_over_time(store: Store, ns: str) -> None:
    rate, burst = 5.0, 2
    assert await store.take(ns + "b", rate=rate, burst=burst) == 0.0
    assert await store.take(ns + "b", rate=rate, burst=burst) == 0.0
    wait = await store.take(ns + "b", rate=rate, burst=burst)
    assert 0 < wait <= 1 / rate + TOLERANCE
    await asyncio.sleep(wait + 0.05)
    assert await store.take(ns + "b", rate=rate, burst=burst) == 0.0


async def test_a_bucket_never_refills_beyond_its_burst(store: Store, ns: str) -> None:
    rate, burst = 10.0, 3
    assert await store.take(ns + "b", rate=rate, burst=burst) == 0.0
    await asyncio.sleep(0.4)  # 4 tokens' worth of time: the bucket holds 3 at most
    assert await store.take(ns + "b", rate=rate, burst=burst, cost=3) == 0.0
    assert await store.take(ns + "b", rate=rate, burst=burst, cost=2) > 0


async def test_a_cost_above_the_tokens_takes_nothing(store: Store, ns: str) -> None:
    burst = 5
    assert await store.take(ns + "b", rate=SLOW, burst=burst, cost=3) == 0.0
    wait = await store.take(ns + "b", rate=SLOW, burst=burst, cost=3)
    assert wait == pytest.approx((3 - 2) / SLOW, rel=0.01)  # one token missing
    # The refused take took nothing: the two tokens left are still there, and no more.
    assert await store.take(ns + "b", rate=SLOW, burst=burst, cost=2) == 0.0
    assert await store.take(ns + "b", rate=SLOW, burst=burst, cost=1) > 0


async def test_buckets_are_independent(store: Store, ns: str) -> None:
    assert await store.take(ns + "a", rate=SLOW, burst=1) == 0.0
    assert await store.take(ns + "a", rate=SLOW, burst=1) > 0
    assert await store.take(ns + "b", rate=SLOW, burst=1) == 0.0


async def test_buckets_and_values_do_not_share_keys(store: Store, ns: str) -> None:
    await store.set(ns + "same", b"value", ttl=60)
    assert await store.take(ns + "same", rate=SLOW, burst=1) == 0.0
    assert await store.get(ns + "same") == b"value"


async def test_concurrent_takes_never_exceed_the_burst(store: Store, ns: str) -> None:
    burst = 10
    results = await asyncio.gather(
        *(store.take(ns + "b", rate=SLOW, burst=burst) for _ in range(CONTENDERS)),
        return_exceptions=True,
    )
    taken = [r for r in results if r == 0.0]
    assert len(taken) <= burst, results


async def test_concurrent_takes_are_all_answered(
    store: Store, ns: str, request: pytest.FixtureRequest
) -> None:
    burst = 10
    results = await asyncio.gather(
        *(store.take(ns + "b", rate=SLOW, burst=burst) for _ in range(CONTENDERS))
    )
    assert sum(1 for wait in results if wait == 0.0) == burst, results
    assert all(wait > 0 for wait in results if wait != 0.0)


async def test_an_untouched_bucket_expires_full(
    store: Store, ns: str, request: pytest.FixtureRequest
) -> None:
    rate, burst = 10.0, 1
    assert await store.take(ns + "b", rate=rate, burst=burst) == 0.0
    assert await store.take(ns + "b", rate=rate, burst=burst) > 0
    # Past the bucket's time to live (DynamoDB rounds its expiry up to whole seconds, plus one).
    margin = 1.2 if store.name == "dynamodb" else 0.2
    await asyncio.sleep(bucket_ttl(rate, burst) + margin)
    assert await store.take(ns + "b", rate=rate, burst=burst) == 0.0


# --- several buckets of one request, all or nothing (Store.take_all) ---------------------------


async def test_take_all_takes_from_every_bucket(store: Store, ns: str) -> None:
    buckets = [Bucket(ns + "caller", SLOW, 3, 2), Bucket(ns + "ip", SLOW, 5, 2)]
    assert await store.take_all(buckets) == 0.0
    # What is left, bucket by bucket: the caller's 1 of 3, the IP's 3 of 5.
    assert await store.take(ns + "caller", rate=SLOW, burst=3, cost=2) > 0
    assert await store.take(ns + "caller", rate=SLOW, burst=3, cost=1) == 0.0
    assert await store.take(ns + "ip", rate=SLOW, burst=5, cost=3) == 0.0
    assert await store.take(ns + "ip", rate=SLOW, burst=5, cost=1) > 0


async def test_take_all_refused_by_one_bucket_takes_from_none(store: Store, ns: str) -> None:
    assert await store.take(ns + "ip", rate=SLOW, burst=2, cost=2) == 0.0  # the IP's is empty
    buckets = [Bucket(ns + "caller", SLOW, 4, 1), Bucket(ns + "ip", SLOW, 2, 1)]
    for _ in range(3):  # refused again and again: the caller's bucket keeps its 4 tokens
        assert await store.take_all(buckets) > 0
    assert await store.take(ns + "caller", rate=SLOW, burst=4, cost=4) == 0.0


async def test_take_all_answers_the_wait_of_the_first_bucket_refusing(
    store: Store, ns: str
) -> None:
    rate = 0.5
    assert await store.take(ns + "a", rate=rate, burst=1) == 0.0
    assert await store.take(ns + "b", rate=rate / 4, burst=1) == 0.0
    # Both are empty: "a" refills a token in 2 s, "b" in 8 s (less what refilled meanwhile, a
    # fraction of a second); the first in order answers.
    wait = await store.take_all([Bucket(ns + "a", rate, 1), Bucket(ns + "b", rate / 4, 1)])
    assert 1 < wait <= 2
    wait = await store.take_all([Bucket(ns + "b", rate / 4, 1), Bucket(ns + "a", rate, 1)])
    assert 7 < wait <= 8


async def test_take_all_of_one_key_twice_counts_both(store: Store, ns: str) -> None:
    twice = [Bucket(ns + "b", SLOW, 3, 2), Bucket(ns + "b", SLOW, 3, 2)]
    assert await store.take_all(twice) > 0  # 4 of a bucket of 3: refused, nothing taken
    assert await store.take_all(twice[:1]) == 0.0
    assert await store.take(ns + "b", rate=SLOW, burst=3, cost=1) == 0.0
    assert await store.take(ns + "b", rate=SLOW, burst=3, cost=1) > 0


async def test_concurrent_take_alls_never_exceed_any_burst(store: Store, ns: str) -> None:
    shared = Bucket(ns + "ip", SLOW, 10, 1)
    results = await asyncio.gather(
        *(store.take_all([Bucket(f"{ns}caller{i}", SLOW, 5, 1), shared]) for i in range(20))
    )
    assert sum(1 for wait in results if wait == 0.0) == 10, results
    assert await store.take(ns + "ip", rate=SLOW, burst=10) > 0


async def test_take_all_of_no_bucket_takes_nothing(store: Store) -> None:
    assert await store.take_all([]) == 0.0


# --- the Redis clients' connections (core.stores.redis.connect) ---------------------------------


async def _connections_named(redis_url: str, name: str) -> int:
    from redis.asyncio import Redis

    admin = Redis.from_url(redis_url)
    try:
        return sum(1 for c in await admin.client_list() if c.get("name") == name)
    finally:
        await admin.aclose()


@pytest.mark.parametrize(("query", "bound"), [("", MAX_CONNECTIONS), ("?max_connections=3", 3)])
async def test_a_redis_client_opens_at_most_its_bound_and_every_call_waits_its_turn(
    redis_url: str, query: str, bound: int
) -> None:
    name = f"bounded-{uuid.uuid4().hex[:8]}"
    url = redis_url.partition("?")[0] + query
    client = connect(url, client_name=name)
    try:
        # redis-py's own pool would open 200 connections here, and fail the calls past 100.
        answers = await asyncio.gather(*(client.ping() for _ in range(200)))
        assert all(answers)
        assert await _connections_named(redis_url, name) == bound
    finally:
        await client.aclose()
    assert await _connections_named(redis_url, name) == 0


# --- idempotency records on each backend (core/idempotency.py) ---------------------------------


async def test_an_idempotency_quota_bucket_refuses_then_takes_a_refund(
    store: Store, ns: str
) -> None:
    # The quota's shape: `per_caller` tokens, refilled at `per_caller` per day.
    per_caller, day = 3, 86_400.0
    for _ in range(per_caller):
        assert await store.take(ns + "q", rate=per_caller / day, burst=per_caller) == 0.0
    wait = await store.take(ns + "q", rate=per_caller / day, burst=per_caller)
    assert wait == pytest.approx(day / per_caller, rel=0.01)
    await store.take(ns + "q", rate=per_caller / day, burst=per_caller, cost=-1)  # released
    assert await store.take(ns + "q", rate=per_caller / day, burst=per_caller) == 0.0
    assert await store.take(ns + "q", rate=per_caller / day, burst=per_caller) > 0


async def test_idempotency_keeps_an_unknown_outcome_and_replays_it(store: Store, ns: str) -> None:
    idem = Idempotency(store, ttl=3600, wait=0)
    calls: list[str] = []

    async def late() -> Any:
        calls.append("late")
        raise ProviderTimeout("pusher did not answer (ReadTimeout)")

    with pytest.raises(ProviderTimeout):
        await idem.once(ns + "caller", "k", "req", late)
    for _ in range(3):
        with pytest.raises(TimeoutReplayed) as replayed:
            await idem.once(ns + "caller", "k", "req", late)
        assert replayed.value.detail == "pusher did not answer (ReadTimeout)"
        assert replayed.value.extra["accepted"] is None
    assert calls == ["late"]


async def test_idempotency_resends_within_the_window_then_replays(store: Store, ns: str) -> None:
    idem = Idempotency(store, ttl=3600, wait=0)
    answers: list[Any] = [ProviderTimeout("no answer"), {"accepted": 1}]

    async def publish() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with pytest.raises(ProviderTimeout):
        await idem.once(ns + "caller", "k", "req", publish, resend_within=60)
    assert await idem.once(ns + "caller", "k", "req", publish, resend_within=60) == (
        {"accepted": 1},
        False,
    )
    assert await idem.once(ns + "caller", "k", "req", publish) == ({"accepted": 1}, True)


async def test_idempotency_quota_is_per_caller_and_a_release_refunds(store: Store, ns: str) -> None:
    idem = Idempotency(store, ttl=3600, wait=0, per_caller=2)

    async def ok() -> Any:
        return {"accepted": 1}

    async def down() -> Any:
        raise ProviderUnavailable("down")

    with pytest.raises(ProviderUnavailable):
        await idem.once(ns + "a", "k0", "req", down)  # released, refunded
    assert await idem.once(ns + "a", "k1", "req", ok) == ({"accepted": 1}, False)
    assert await idem.once(ns + "a", "k2", "req", ok) == ({"accepted": 1}, False)
    with pytest.raises(RateLimited) as refused:
        await idem.once(ns + "a", "k3", "req", ok)
    assert refused.value.retry_after >= 1800  # one key frees every 3600 / 2 seconds
    assert await store.get(f"idem:{ns}a:k3") is None  # the refused claim is gone
    assert await idem.once(ns + "b", "k3", "req", ok) == ({"accepted": 1}, False)
    assert await idem.once(ns + "a", "k1", "req", ok) == ({"accepted": 1}, True)


# --- choosing the backend ----------------------------------------------------------------------


def _settings(**values: Any) -> Settings:
    return Settings(env="test", **values)


async def test_the_factory_builds_each_backend(
    redis_url: str, moto_endpoint: str, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL_DYNAMODB": moto_endpoint}.items():
        monkeypatch.setenv(name, value)
    aws.client.cache_clear()  # the shared clients read the endpoint when they are built
    memory = create_store(_settings())
    redis = create_store(_settings(store="redis", redis_url=redis_url))
    dynamo = create_store(_settings(store="dynamodb", dynamodb_table=TABLE))
    try:
        assert (memory.name, redis.name, dynamo.name) == BACKENDS
        key = f"factory-{uuid.uuid4().hex}"
        for backend in (memory, redis, dynamo):
            assert await backend.put_if_absent(key, b"v", ttl=5) is None
            assert await backend.get(key) == b"v"
            await backend.delete(key)
    finally:
        for backend in (memory, redis, dynamo):
            await backend.aclose()
        aws.client.cache_clear()


def test_the_factory_bounds_the_memory_store_in_bytes() -> None:
    store = create_store(_settings(memory_store_max_bytes=3 * 1024 * 1024))
    assert isinstance(store, MemoryStore)
    assert store.max_bytes == 3 * 1024 * 1024
    default = create_store(_settings())
    assert isinstance(default, MemoryStore)
    assert default.max_bytes == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("values", "variable"),
    [({"store": "redis"}, "RELAY_REDIS_URL"), ({"store": "dynamodb"}, "RELAY_DYNAMODB_TABLE")],
)
def test_the_factory_names_the_missing_setting(values: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{variable}: required"):
        create_store(_settings(**values))


async def test_dynamodb_items_carry_the_ttl_attribute_infra_enables(dynamodb: Any) -> None:
    text = (ROOT / "infra" / "relay-tables.yaml").read_text()
    declared = set(re.findall(r"TimeToLiveSpecification:\s+AttributeName:\s*(\S+)", text))
    assert len(declared) == 1, declared
    store = DynamoStore(TABLE, client=dynamodb)
    key = f"ttl-{uuid.uuid4().hex}"
    await store.set(key, b"v", ttl=60)
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": key}})["Item"]
    (attribute,) = declared
    assert attribute in item
    assert float(item[attribute]["N"]) == pytest.approx(time.time() + 60, abs=5)
