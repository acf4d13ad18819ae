"""The store interface: keys with a time to live, and token buckets. Every operation is atomic.

Rate limits need an atomic "take a token"; idempotency needs an atomic "put if absent". Both are
one round trip in each backend (a Lua script in Redis, a conditional write in DynamoDB).
"""

from __future__ import annotations

from abc import ABC, abstractmethod


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
