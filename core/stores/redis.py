"""The Redis store: state shared by every relay process pointing at the same server.

`connect` makes the relay's Redis clients (this store's and the local provider's backplane): each
client's pool holds at most `max_connections` connections (a query parameter of RELAY_REDIS_URL,
`redis://host:6379/0?max_connections=32`; MAX_CONNECTIONS when absent), and a call made while all
are busy waits for one. redis-py's own pool opens a connection for every call made while the
others are busy, keeps it for the life of the process, and past 100 fails the call ("Too many
connections", which the backplane takes for an outage): 1,000 sockets subscribing at once left 81
and 102 connections open in the two workers of `relay serve --workers 2`. Redis answers one
command at a time, so connections beyond a few add nothing but memory on both sides.
redis-py's BlockingConnectionPool would wait too, at ~40 us of CPU more per call (a condition and a
timer each, measured); `BoundedPool` is the plain pool behind a semaphore (no cost measured).
"""

from __future__ import annotations

import asyncio
import math
import struct
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool

from core.errors import ProviderUnavailable
from core.stores.base import Bucket, LogPage, Store, bucket_ttl

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

# Token buckets, every bucket of one request in one round trip, atomic, and timed by the
# server's clock so hosts with skewed clocks agree: each is refilled and checked first, then, if
# all have their tokens, each is spent; else nothing is written and the first lacking bucket's
# wait is the answer. KEYS: the buckets. ARGV: rate, burst, cost, ttl ms per bucket, in order.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local left = {}
for i, key in ipairs(KEYS) do
  local a = (i - 1) * 4
  local rate, burst, cost = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local tokens = left[key]
  if tokens == nil then
    local state = redis.call('HMGET', key, 't', 'ts')
    tokens = tonumber(state[1]) or burst
    local updated = tonumber(state[2]) or now
    tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
  end
  if tokens < cost then return tostring((cost - tokens) / rate) end
  left[key] = math.min(burst, tokens - cost)
end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 't', tostring(left[key]), 'ts', tostring(now))
  redis.call('PEXPIRE', key, tonumber(ARGV[(i - 1) * 4 + 4]))
end
return '0'
"""

_PUT_IF_ABSENT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"""


# A channel log: a hash {e: epoch, n: newest number} at KEYS[1], its entries in a sorted set
# `<KEYS[1]>:<epoch>` scored by number (members: the number, 8 bytes, then the payload), so the
# entries of an ended epoch are never read again and expire on their own.
_LOG_RESERVE = """
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e, 'n', 0)
end
local n = redis.call('HINCRBY', KEYS[1], 'n', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {e, n}
"""

_LOG_APPEND = """
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[1] then return 0 end
local z = KEYS[1] .. ':' .. ARGV[1]
for i = 4, #ARGV, 2 do redis.call('ZADD', z, ARGV[i], ARGV[i + 1]) end
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
redis.call('ZREMRANGEBYSCORE', z, '-inf', n - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', z, ARGV[2])
return 1
"""

_LOG_READ = """
local e = redis.call('HGET', KEYS[1], 'e')
if not e then return {} end
local n = redis.call('HGET', KEYS[1], 'n')
local z = KEYS[1] .. ':' .. e
local items
if ARGV[1] == '' then
  items = redis.call('ZRANGE', z, -tonumber(ARGV[2]), -1)
else
  items = redis.call('ZRANGEBYSCORE', z, '(' .. ARGV[1], '+inf', 'LIMIT', 0, tonumber(ARGV[2]))
end
return {e, n, items}
"""
_NUMBER = struct.Struct(">Q")

MAX_CONNECTIONS = 16  # per client and process, unless RELAY_REDIS_URL sets max_connections


class BoundedPool(ConnectionPool):
    """redis-py's connection pool, waiting for a free connection (not failing, nor opening one
    more) when `max_connections` are in use."""

    def __init__(self, *, max_connections: int | None = None, **options: Any) -> None:
        super().__init__(max_connections=max_connections or MAX_CONNECTIONS, **options)
        self._free = asyncio.Semaphore(self.max_connections)

    async def get_connection(self, *args: Any, **options: Any) -> AbstractConnection:
        """A connection once one is free (the Semaphore's waiters are served in order)."""
        await self._free.acquire()
        try:
            taking = super().get_connection(*args, **options)  # type: ignore[no-untyped-call]
            connection: AbstractConnection = await taking
        except BaseException:
            self._free.release()
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        """Back to the pool, and its place to the next waiter."""
        taken = connection in self._in_use_connections
        try:
            await super().release(connection)
        finally:
            if taken:
                self._free.release()


def connect(url: str, **options: Any) -> Redis:
    """A client for `url` whose pool holds at most MAX_CONNECTIONS (or the URL's
    `max_connections`) connections; a call made while all are busy waits for one."""
    from redis.asyncio import Redis

    return Redis.from_pool(BoundedPool.from_url(url, **options))


class RedisStore(Store):
    """Keys under a prefix; token buckets as small hashes updated by a Lua script."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "relay:", client: Redis | None = None) -> None:
        if client is None:
            client = connect(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._redis = client
        self._prefix = prefix
        self._take: Any = client.register_script(_TAKE)
        self._put: Any = client.register_script(_PUT_IF_ABSENT)
        self._log_reserve: Any = client.register_script(_LOG_RESERVE)
        self._log_append: Any = client.register_script(_LOG_APPEND)
        self._log_read: Any = client.register_script(_LOG_READ)

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
        return await self.take_all([Bucket(key, rate, burst, cost)])

    async def take_all(self, buckets: Sequence[Bucket]) -> float:
        """Every bucket of a request in one script: all taken, or none and the first wait."""
        if not buckets:
            return 0.0
        keys: list[str] = []
        args: list[float] = []
        for key, rate, burst, cost in buckets:
            keys.append(self._prefix + "bucket:" + key)
            args += [rate, burst, cost, math.ceil(bucket_ttl(rate, burst) * 1000)]
        return float(await self._call(self._take(keys=keys, args=args)))

    async def log_reserve(
        self, name: str, count: int, *, epoch: str, ttl: float
    ) -> tuple[str, int]:
        """HINCRBY under the log's epoch (a new one when the hash is gone), one script."""
        found = await self._call(
            self._log_reserve(keys=[self._log_key(name)], args=[epoch, count, _ms(ttl)])
        )
        return found[0].decode(), int(found[1])

    async def log_append(
        self, name: str, epoch: str, entries: Sequence[tuple[int, bytes]], *, ttl: float, keep: int
    ) -> None:
        """ZADD if the epoch is still the log's, then trim below the newest - keep."""
        args: list[Any] = [epoch, _ms(ttl), keep]
        for number, payload in entries:
            args += [number, _NUMBER.pack(number) + payload]
        await self._call(self._log_append(keys=[self._log_key(name)], args=args))

    async def log_read(self, name: str, *, after: int | None, limit: int) -> LogPage:
        """The epoch, the newest number and the entries, read in one script."""
        found = await self._call(
            self._log_read(keys=[self._log_key(name)], args=["" if after is None else after, limit])
        )
        if not found:
            return LogPage(None, 0, [])
        entries = [(_NUMBER.unpack_from(m)[0], bytes(m[_NUMBER.size :])) for m in found[2]]
        return LogPage(found[0].decode(), int(found[1]), entries)

    def _log_key(self, name: str) -> str:
        return f"{self._prefix}log:{name}"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
