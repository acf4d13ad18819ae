"""The in-process store on a fake clock: exact expiry, exact refills, and bounded memory.

The contract every backend shares is tests/integration/test_stores.py; this file checks what only
a controllable clock can show exactly, and the memory store's own bound: in bytes, never by
evicting a live value.
"""

from __future__ import annotations

import asyncio

import pytest

from core.errors import ProviderUnavailable
from core.stores.base import bucket_ttl, refill
from core.stores.memory import MemoryStore


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)


async def test_a_value_lives_exactly_its_ttl(store: MemoryStore, clock: Clock) -> None:
    await store.set("k", b"v", ttl=10)
    clock.advance(9.999)
    assert await store.get("k") == b"v"
    clock.advance(0.001)
    assert await store.get("k") is None


async def test_put_if_absent_respects_expiry(store: MemoryStore, clock: Clock) -> None:
    assert await store.put_if_absent("k", b"a", ttl=5) is None
    clock.advance(4)
    assert await store.put_if_absent("k", b"b", ttl=5) == b"a"
    clock.advance(1)
    assert await store.put_if_absent("k", b"c", ttl=5) is None
    assert await store.get("k") == b"c"


async def test_put_if_absent_concurrent_claims_one_winner(store: MemoryStore) -> None:
    results = await asyncio.gather(
        *(store.put_if_absent("k", bytes([i]), ttl=5) for i in range(50))
    )
    assert results.count(None) == 1
    assert len({r for r in results if r is not None}) == 1


async def test_bucket_burst_then_exact_wait(store: MemoryStore, clock: Clock) -> None:
    for _ in range(4):
        assert await store.take("b", rate=2, burst=4) == 0.0
    assert await store.take("b", rate=2, burst=4) == pytest.approx(0.5)
    clock.advance(0.25)  # half a token back
    assert await store.take("b", rate=2, burst=4) == pytest.approx(0.25)
    clock.advance(0.25)
    assert await store.take("b", rate=2, burst=4) == 0.0
    assert await store.take("b", rate=2, burst=4) == pytest.approx(0.5)


async def test_cost_above_tokens_takes_nothing_and_says_how_long(
    store: MemoryStore, clock: Clock
) -> None:
    assert await store.take("b", rate=1, burst=10, cost=7) == 0.0
    assert await store.take("b", rate=1, burst=10, cost=5) == pytest.approx(2.0)
    assert await store.take("b", rate=1, burst=10, cost=3) == 0.0  # the 3 left are intact
    assert await store.take("b", rate=1, burst=10, cost=1) == pytest.approx(1.0)


async def test_refill_stops_at_the_burst(store: MemoryStore, clock: Clock) -> None:
    assert await store.take("b", rate=1, burst=3, cost=3) == 0.0
    clock.advance(bucket_ttl(1, 3) - 0.5)  # long enough to refill 3 times over, still kept
    assert await store.take("b", rate=1, burst=3, cost=3) == 0.0
    assert await store.take("b", rate=1, burst=3) == pytest.approx(1.0)


async def test_an_untouched_bucket_is_full_again_after_its_ttl(
    store: MemoryStore, clock: Clock
) -> None:
    assert await store.take("b", rate=1, burst=2, cost=2) == 0.0
    clock.advance(bucket_ttl(1, 2) + 1)
    assert await store.take("b", rate=1, burst=2, cost=2) == 0.0


async def test_a_clock_going_backwards_refills_nothing(store: MemoryStore, clock: Clock) -> None:
    assert await store.take("b", rate=1, burst=1) == 0.0
    clock.advance(-5)
    assert await store.take("b", rate=1, burst=1) == pytest.approx(1.0)


SMALL = 64 * 1024  # bytes: a few hundred small values


async def fill(store: MemoryStore, prefix: str, *, ttl: float = 60) -> list[str]:
    """Set values until the store refuses one; the keys it took."""
    keys: list[str] = []
    for i in range(100_000):
        key = f"{prefix}{i}"
        try:
            await store.set(key, b"v" * 100, ttl=ttl)
        except ProviderUnavailable:
            return keys
        keys.append(key)
    raise AssertionError("the store never filled up")


async def test_a_full_store_refuses_new_values_and_keeps_every_live_one(clock: Clock) -> None:
    store = MemoryStore(clock=clock, max_bytes=SMALL)
    kept = await fill(store, "a")
    assert 100 < len(kept) < SMALL // 100
    assert store.used_bytes <= SMALL
    with pytest.raises(ProviderUnavailable, match="memory store is full") as refused:
        await store.put_if_absent("new-key", b"v" * 100, ttl=60)
    assert refused.value.status == 503
    assert refused.value.headers()["Retry-After"] == "60"  # nothing expires sooner; capped
    assert await store.get("new-key") is None
    assert [await store.get(k) for k in kept] == [b"v" * 100] * len(kept)


async def test_a_live_value_may_always_be_replaced(clock: Clock) -> None:
    store = MemoryStore(clock=clock, max_bytes=SMALL)
    kept = await fill(store, "a")
    await store.set(kept[0], b"answer" * 100, ttl=60)  # a bigger answer for a pending claim
    assert await store.get(kept[0]) == b"answer" * 100


async def test_expired_values_make_room(clock: Clock) -> None:
    store = MemoryStore(clock=clock, max_bytes=SMALL)
    old = await fill(store, "old", ttl=10)
    clock.advance(5)
    with pytest.raises(ProviderUnavailable) as refused:
        await store.set("early-key", b"v" * 100, ttl=60)
    assert refused.value.headers()["Retry-After"] == "5"  # when the first ones expire
    clock.advance(5)
    new = await fill(store, "new")
    assert len(new) == len(old)
    assert store.used_bytes <= SMALL


async def test_deleted_values_make_room(clock: Clock) -> None:
    store = MemoryStore(clock=clock, max_bytes=SMALL)
    kept = await fill(store, "a")
    for key in kept[:10]:
        await store.delete(key)
    # Their heap entries linger until they would have expired: the rest of each entry is free.
    assert 5 <= len(await fill(store, "b")) <= 10


async def test_buckets_are_bounded_to_a_quarter_least_recently_used_first(clock: Clock) -> None:
    store = MemoryStore(clock=clock, max_bytes=SMALL)
    assert await store.take("x", rate=0.001, burst=1) == 0.0
    for i in range(2000):
        assert await store.take(f"b{i}", rate=0.001, burst=1) == 0.0
    assert store.bucket_bytes <= SMALL // 4
    # "x" was evicted: a fresh bucket (full) is all that costs; the last one is still there.
    assert await store.take("x", rate=0.001, burst=1) == 0.0
    assert await store.take("b1999", rate=0.001, burst=1) > 0


async def test_buckets_never_push_out_values(clock: Clock) -> None:
    store = MemoryStore(clock=clock, max_bytes=SMALL)
    kept = await fill(store, "a")
    for i in range(2000):
        await store.take(f"b{i}", rate=0.001, burst=1)
    assert [await store.get(k) for k in kept] == [b"v" * 100] * len(kept)


async def test_values_push_out_only_buckets_that_are_full_again(clock: Clock) -> None:
    store = MemoryStore(clock=clock, max_bytes=SMALL)
    for i in range(50):
        await store.take(f"b{i}", rate=1.0, burst=1)  # full again after 2 s
    assert store.bucket_bytes > 0
    kept = await fill(store, "a")
    clock.advance(3)
    await store.take("b49", rate=1.0, burst=1)  # touched: still owed a refill
    assert await store.put_if_absent("more", b"v" * 100, ttl=60) is None
    assert len(store._buckets) == 1  # the 49 stale ones went, the live one stayed
    assert [await store.get(k) for k in kept] == [b"v" * 100] * len(kept)


async def test_delete_forgets_only_values(store: MemoryStore) -> None:
    await store.set("k", b"v", ttl=5)
    await store.delete("k")
    await store.delete("never-there")
    assert await store.get("k") is None


def test_refill_and_bucket_ttl_arithmetic() -> None:
    assert refill(1.0, 2.0, rate=0.5, burst=5) == 2.0
    assert refill(4.5, 10.0, rate=1, burst=5) == 5.0
    assert refill(1.0, -3.0, rate=1, burst=5) == 1.0
    assert bucket_ttl(2.0, 10) == 6.0
