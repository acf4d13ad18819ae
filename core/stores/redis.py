"""The Redis store: state shared by every relay process pointing at the same server."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from core.errors import ProviderUnavailable
from core.stores.base import Store, bucket_ttl

if TYPE_CHECKING:
    from redis.asyncio import Redis

# One round trip, atomic, and timed by the server's clock so hosts with skewed clocks agree.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= cost then tokens = math.min(burst, tokens - cost)
else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return tostring(wait)
"""

_PUT_IF_ABSENT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"""


class RedisStore(Store):
    """Keys under a prefix; token buckets as small hashes updated by a Lua script."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "relay:", client: Redis | None = None) -> None:
        if client is None:
            from redis.asyncio import Redis

            client = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._redis = client
        self._prefix = prefix
        self._take: Any = client.register_script(_TAKE)
        self._put: Any = client.register_script(_PUT_IF_ABSENT)

    async def _call(self, operation: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await operation
        except RedisError as exc:
            raise ProviderUnavailable(f"the Redis store failed: {exc.__class__.__name__}") from exc

    async def get(self, key: str) -> bytes | None:
        """The value, or None."""
        value: bytes | None = await self._call(self._redis.get(self._prefix + key))
        return value

    async def put_if_absent(self, key: str, value: bytes, *, ttl: float) -> bytes | None:
        """SET NX, and the current value when it was already there."""
        existing = await self._call(
            self._put(keys=[self._prefix + key], args=[value, max(1, math.ceil(ttl * 1000))])
        )
        return existing if isinstance(existing, bytes) else None

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        """Store, replacing."""
        await self._call(
            self._redis.set(self._prefix + key, value, px=max(1, math.ceil(ttl * 1000)))
        )

    async def delete(self, key: str) -> None:
        """Forget."""
        await self._call(self._redis.delete(self._prefix + key))

    async def take(self, key: str, *, rate: float, burst: float, cost: float = 1.0) -> float:
        """Token bucket, atomic across processes."""
        ttl_ms = math.ceil(bucket_ttl(rate, burst) * 1000)
        wait = await self._call(
            self._take(keys=[self._prefix + "bucket:" + key], args=[rate, burst, cost, ttl_ms])
        )
        return float(wait)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
