"""The in-process store on a fake clock: exact expiry, exact refills, and bounded memory.

The contract every backend shares is tests/integration/test_stores.py; this file checks what only
a controllable clock can show exactly, and the memory store's own eviction.
"""

from __future__ import annotations

import asyncio

import pytest

from app.stores.base import bucket_ttl, refill
from app.stores.memory import MemoryStore


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


async def test_values_are_bounded_least_recently_used_first(clock: Clock) -> None:
    store = MemoryStore(clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        await store.set(key, key.encode(), ttl=60)
    assert await store.get("a") == b"a"  # "a" is now the most recently used
    await store.set("d", b"d", ttl=60)
    assert await store.get("b") is None  # the least recently used went
    assert [await store.get(k) for k in ("a", "c", "d")] == [b"a", b"c", b"d"]


async def test_buckets_are_bounded_too(clock: Clock) -> None:
    store = MemoryStore(clock=clock, max_keys=2)
    assert await store.take("x", rate=0.001, burst=1) == 0.0
    for key in ("y", "z"):
        assert await store.take(key, rate=0.001, burst=1) == 0.0
    # "x" was evicted: a fresh bucket (full) is all that costs, memory stays at two buckets.
    assert await store.take("x", rate=0.001, burst=1) == 0.0
    assert await store.take("z", rate=0.001, burst=1) > 0


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
