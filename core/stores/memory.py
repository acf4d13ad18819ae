"""The in-process store: one process only (the embedded default and the tests).

Bounded in bytes (RELAY_MEMORY_STORE_MAX_BYTES, default 64 MiB), each entry counted as the size of
its key and value objects plus a fixed overhead for the containers that hold it:

- values (idempotency records) are never evicted while they live. A new one that does not fit
  first makes room from expired values and from rate-limit buckets untouched past their TTL; if
  it still does not fit, it is refused (503 provider-unavailable, with Retry-After): a full store
  refuses new keys, it never forgets a caller's record. Replacing a live value is never refused
  (a publish that happened must be able to store its answer), so the bound can be exceeded by
  the answers of the publishes in flight.
- rate-limit buckets take at most a quarter of the bound; past it the least recently used goes.
  A bucket that comes back starts full, which can only favour its owner.
- channel logs (history) take at most a quarter too; past it the least recently written log goes
  whole, so its channel's next message starts a new epoch and readers are told of the gap.
"""

from __future__ import annotations

import bisect
import heapq
import math
import sys
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from core.errors import ProviderUnavailable
from core.stores.base import LogPage, Store, bucket_ttl, refill, spend

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MAX_BYTES = 64 * 1024 * 1024
BUCKET_SHARE = 4  # buckets hold at most 1/BUCKET_SHARE of the bytes
LOG_SHARE = 4  # channel logs too
# Beyond the key and value objects, measured with tracemalloc (CPython 3.11, 33,000 entries):
# about 170 bytes per value (dict slot, (value, expiry) tuple, expiry heap entry) and 210 per
# bucket (dict slot, linked-list node, (tokens, updated, expires) tuple): counted with a margin.
VALUE_OVERHEAD = 128
BUCKET_OVERHEAD = 224
LOG_OVERHEAD = 256  # a log's slot, its object and lists
LOG_ENTRY_OVERHEAD = 96  # an entry's (number, payload) tuple and list slot
HEAP_ENTRY = 64
MAX_RETRY_AFTER = 60


class MemoryStore(Store):
    """A dict with expiry times, bounded in bytes; live values are never evicted."""

    name = "memory"

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_bytes: int = MAX_BYTES
    ) -> None:
        self._clock = clock
        self.max_bytes = max_bytes
        self._values: dict[str, tuple[bytes, float]] = {}
        self._expiries: list[tuple[float, str]] = []  # a heap; entries of replaced values linger
        self._buckets: OrderedDict[str, tuple[float, float, float]] = OrderedDict()
        self.value_bytes = 0  # values and the heap
        self.bucket_bytes = 0
        self._logs: OrderedDict[str, _Log] = OrderedDict()  # least recently written first
        self.log_bytes = 0

    @property
    def used_bytes(self) -> int:
        """What the store counts against its bound."""
        return self.value_bytes + self.bucket_bytes + self.log_bytes

    # -- values -------------------------------------------------------------------------------
    def _live(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._forget(key)
            return None
        return entry[0]

    def _forget(self, key: str) -> None:
        entry = self._values.pop(key, None)
        if entry is not None:
            self.value_bytes -= _value_size(key, entry[0])

    def _store(self, key: str, value: bytes, ttl: float) -> None:
        now = self._clock()
        old = self._values.get(key)
        size = _value_size(key, value) + HEAP_ENTRY
        if old is None or old[1] <= now:  # a new key: it must fit
            self._purge(now)
            if self.used_bytes + size > self.max_bytes:
                self._drop_stale_buckets(now)
            if self.used_bytes + size > self.max_bytes:
                wait = self._expiries[0][0] - now if self._expiries else 1.0
                raise ProviderUnavailable(
                    f"the relay's memory store is full ({self.max_bytes} bytes); it evicts no "
                    "live record, so new Idempotency-Keys wait until records expire",
                    retry_after=min(MAX_RETRY_AFTER, max(1, math.ceil(wait))),
                )
        self._forget(key)
        expires = now + ttl
        # A copy is allocated at its size; orjson's output can take twice its length (measured).
        self._values[key] = (bytes(memoryview(value)), expires)
        self.value_bytes += size
        heapq.heappush(self._expiries, (expires, key))
        if len(self._expiries) > 2 * len(self._values) + 1024:
            self._rebuild_heap()

    def _purge(self, now: float) -> None:
        """Forget every expired value, earliest first."""
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            self.value_bytes -= HEAP_ENTRY
            entry = self._values.get(key)
            if entry is not None and entry[1] == expires:
                self._forget(key)

    def _rebuild_heap(self) -> None:
        """Drop the heap entries of replaced and deleted values."""
        self.value_bytes -= HEAP_ENTRY * len(self._expiries)
        self._expiries = [(expires, key) for key, (_, expires) in self._values.items()]
        heapq.heapify(self._expiries)
        self.value_bytes += HEAP_ENTRY * len(self._expiries)

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
        """Store, replacing; a new key is refused (503) when there is no room for it."""
        self._store(key, value, ttl)

    async def delete(self, key: str) -> None:
        """Forget (its heap entry goes when it comes up)."""
        self._forget(key)

    # -- token buckets ------------------------------------------------------------------------
    async def take(self, key: str, *, rate: float, burst: float, cost: float = 1.0) -> float:
        """Token bucket, refilled lazily on each call."""
        now = self._clock()
        lifetime = bucket_ttl(rate, burst)
        found = self._buckets.get(key)
        tokens, updated = (burst, now) if found is None else found[:2]
        if now - updated > lifetime:
            tokens = burst
        tokens = refill(tokens, now - updated, rate=rate, burst=burst)
        tokens, wait = spend(tokens, cost=cost, rate=rate, burst=burst)
        if found is None:
            self.bucket_bytes += _bucket_size(key)
        self._buckets[key] = (tokens, now, now + lifetime)
        self._buckets.move_to_end(key)
        while self.bucket_bytes > self.max_bytes // BUCKET_SHARE and len(self._buckets) > 1:
            self._drop_bucket()
        return wait

    def _drop_bucket(self) -> None:
        old, _ = self._buckets.popitem(last=False)
        self.bucket_bytes -= _bucket_size(old)

    def _drop_stale_buckets(self, now: float) -> None:
        """Drop least recently used buckets that are full again (as good as absent)."""
        while self._buckets:
            expires = next(iter(self._buckets.values()))[2]
            if expires > now:
                return
            self._drop_bucket()

    # -- channel logs -------------------------------------------------------------------------
    def _log(self, name: str) -> _Log | None:
        log = self._logs.get(name)
        if log is not None and log.expires <= self._clock():
            self._drop_log(name)
            return None
        return log

    def _drop_log(self, name: str) -> None:
        log = self._logs.pop(name, None)
        if log is not None:
            self.log_bytes -= log.size

    async def log_reserve(
        self, name: str, count: int, *, epoch: str, ttl: float
    ) -> tuple[str, int]:
        """Next numbers of the log, a new log under `epoch` when there is none."""
        log = self._log(name)
        if log is None:
            log = self._logs[name] = _Log(epoch, sys.getsizeof(name) + LOG_OVERHEAD)
            self.log_bytes += log.size
        self._logs.move_to_end(name)
        log.newest += count
        log.expires = self._clock() + ttl
        return log.epoch, log.newest

    async def log_append(
        self, name: str, epoch: str, entries: Sequence[tuple[int, bytes]], *, ttl: float, keep: int
    ) -> None:
        """Add entries (in number order), drop those `keep` below the newest, then the least
        recently written logs past this store's share of the bound."""
        log = self._log(name)
        if log is None or log.epoch != epoch:
            return  # the log ended while the provider was called: these belong to no epoch
        for number, payload in entries:
            bisect.insort(log.entries, (number, bytes(payload)))
            log.grow(_entry_size(payload))
            self.log_bytes += _entry_size(payload)
        floor = log.newest - keep
        while log.entries and log.entries[0][0] <= floor:
            _, payload = log.entries.pop(0)
            log.grow(-_entry_size(payload))
            self.log_bytes -= _entry_size(payload)
        log.expires = self._clock() + ttl
        self._logs.move_to_end(name)
        while self.log_bytes > self.max_bytes // LOG_SHARE and len(self._logs) > 1:
            self._drop_log(next(iter(self._logs)))

    async def log_read(self, name: str, *, after: int | None, limit: int) -> LogPage:
        """The entries above `after`, or the newest."""
        log = self._log(name)
        if log is None:
            return LogPage(None, 0, [])
        if after is None:
            return LogPage(log.epoch, log.newest, list(log.entries[-limit:]))
        start = bisect.bisect_right(log.entries, after, key=lambda entry: entry[0])
        return LogPage(log.epoch, log.newest, list(log.entries[start : start + limit]))


class _Log:
    """One channel log: its epoch, newest reserved number, entries and expiry."""

    __slots__ = ("entries", "epoch", "expires", "newest", "size")

    def __init__(self, epoch: str, size: int) -> None:
        self.epoch = epoch
        self.newest = 0
        self.entries: list[tuple[int, bytes]] = []
        self.expires = 0.0
        self.size = size

    def grow(self, by: int) -> None:
        self.size += by


def _entry_size(payload: bytes) -> int:
    return sys.getsizeof(payload) + LOG_ENTRY_OVERHEAD


def _value_size(key: str, value: bytes) -> int:
    return sys.getsizeof(key) + sys.getsizeof(value) + VALUE_OVERHEAD


def _bucket_size(key: str) -> int:
    return sys.getsizeof(key) + BUCKET_OVERHEAD
