"""The in-process store: one process only (the embedded default and the tests)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from app.stores.base import Store, bucket_ttl, refill, spend

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_KEYS = 100_000  # least recently used keys go first: memory stays bounded under any load


class MemoryStore(Store):
    """A dict with expiry times and LRU eviction."""

    name = "memory"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS):
        self._clock = clock
        self._max_keys = max_keys
        self._values: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _live(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._values[key]
            return None
        self._values.move_to_end(key)
        return entry[0]

    def _store(self, key: str, value: bytes, ttl: float) -> None:
        self._values[key] = (value, self._clock() + ttl)
        self._values.move_to_end(key)
        while len(self._values) > self._max_keys:
            self._values.popitem(last=False)

    async def get(self, key: str) -> bytes | None:
        """The value, or None."""
        return self._live(key)

    async def put_if_absent(self, key: str, value: bytes, *, ttl: float) -> bytes | None:
        """Atomic within the event loop: no await between the check and the write."""
        existing = self._live(key)
        if existing is not None:
            return existing
        self._store(key, value, ttl)
        return None

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        """Store, replacing."""
        self._store(key, value, ttl)

    async def delete(self, key: str) -> None:
        """Forget."""
        self._values.pop(key, None)

    async def take(self, key: str, *, rate: float, burst: float, cost: float = 1.0) -> float:
        """Token bucket, refilled lazily on each call."""
        now = self._clock()
        tokens, updated = self._buckets.get(key, (burst, now))
        if now - updated > bucket_ttl(rate, burst):
            tokens = burst
        tokens = refill(tokens, now - updated, rate=rate, burst=burst)
        tokens, wait = spend(tokens, cost=cost, rate=rate, burst=burst)
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait
