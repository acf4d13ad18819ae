"""The store interface: keys with a time to live, token buckets, and channel logs. Every
operation is atomic.

Rate limits need an atomic "take a token" (and, for a request that counts against several buckets,
"take from all of them or from none"); idempotency needs an atomic "put if absent". Each is one
round trip in Redis (a Lua script) and in DynamoDB (a conditional write; several buckets there
take one write each). Channel
history (core/history.py) needs a per-channel counter under an epoch and a log of entries keyed
by their number: `log_reserve` before the provider call, `log_append` after it, `log_read`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, NamedTuple

from core.errors import NotSupported

if TYPE_CHECKING:
    from collections.abc import Sequence


class LogPage(NamedTuple):
    """What a channel log holds: its epoch (None: there is no log), its newest reserved number,
    and entries `(number, payload)` oldest first."""

    epoch: str | None
    newest: int
    entries: list[tuple[int, bytes]]


class Bucket(NamedTuple):
    """One token bucket a request takes from: its key, refill rate, size, and what it takes."""

    key: str
    rate: float
    burst: float
    cost: float = 1.0


class Store(ABC):
    """Key-value state with expiry, shared by every process that points at the same backend."""

    name: str

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value, or None if absent or expired."""

    @abstractmethod
    async def put_if_absent(self, key: str, value: bytes, *, ttl: float) -> bytes | None:
        """Store the value unless a live one exists; return the live one, or None if stored."""

    @abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        """Store the value, replacing any."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Forget the key."""

    @abstractmethod
    async def take(self, key: str, *, rate: float, burst: float, cost: float = 1.0) -> float:
        """Take `cost` tokens from the bucket (refilled at `rate` per second up to `burst`).

        Return 0.0 if they were taken, else the seconds until they would be (nothing is taken).
        A negative cost gives tokens back (never beyond `burst`)."""

    async def take_all(self, buckets: Sequence[Bucket]) -> float:
        """Take each bucket's cost from every bucket or from none.

        Return 0.0 if they were taken, else the seconds the first bucket (in order) that lacks
        its tokens would take to have them. This default takes one bucket after another and
        gives back what it took when one refuses; a backend that can check them all in one
        atomic call (Redis: one script) does so instead."""
        taken: list[Bucket] = []
        for bucket in buckets:
            key, rate, burst, cost = bucket
            wait = await self.take(key, rate=rate, burst=burst, cost=cost)
            if wait > 0:
                for k, r, b, spent in taken:
                    await self.take(k, rate=r, burst=b, cost=-spent)
                return wait
            taken.append(bucket)
        return 0.0

    # -- channel logs (history) ---------------------------------------------------------------
    async def log_reserve(
        self, name: str, count: int, *, epoch: str, ttl: float
    ) -> tuple[str, int]:
        """Reserve the next `count` numbers of the log (its lifetime renewed to `ttl`); return its
        epoch and the last number reserved. A log that does not exist (never, or expired) starts
        under `epoch` at 1."""
        raise NotSupported(f"the {self.name} store keeps no channel logs")

    async def log_append(
        self, name: str, epoch: str, entries: Sequence[tuple[int, bytes]], *, ttl: float, keep: int
    ) -> None:
        """Add reserved entries to the log if it is still under `epoch`; entries numbered `keep`
        or more below the newest may be dropped."""
        raise NotSupported(f"the {self.name} store keeps no channel logs")

    async def log_read(self, name: str, *, after: int | None, limit: int) -> LogPage:
        """Up to `limit` entries numbered above `after`, oldest first (after=None: the newest
        `limit`)."""
        raise NotSupported(f"the {self.name} store keeps no channel logs")

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def bucket_ttl(rate: float, burst: float) -> float:
    """How long an untouched bucket must be kept: until it would be full again, plus a margin."""
    return burst / rate + 1.0


def refill(tokens: float, elapsed: float, *, rate: float, burst: float) -> float:
    """Tokens after `elapsed` seconds of refilling."""
    return min(burst, tokens + max(0.0, elapsed) * rate)


def spend(tokens: float, *, cost: float, rate: float, burst: float) -> tuple[float, float]:
    """Take `cost` tokens if there are enough: (left, 0.0); else (tokens, seconds to wait)."""
    if tokens >= cost:
        return min(burst, tokens - cost), 0.0
    return tokens, (cost - tokens) / rate
