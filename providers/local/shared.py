"""The channel state every relay process on one Redis shares: rosters, online users, counts,
cache channels, the count throttle, and each process's heartbeat.

Every entry is recorded per (process, socket) in the process's own index (`<p>host:<id>`: one
field per subscription, `<socket> <channel>` -> the presence user id or ""; `<p>signin:<id>`:
socket -> signed-in user), and the cluster-wide figures are counters beside it, changed by the
same Lua script that changes the index, so that two processes racing on one channel agree on who
joined first and who left last, and so that a dead process's entries can be swept whole: its
heartbeat key expires, and the first survivor to notice runs `sweep`, which removes every entry
of its index and answers which members left and which users went offline.

    <p>subs            hash    channel -> subscriptions in the cluster
    <p>pu:<channel>    hash    user id -> that user's connections on the presence channel
    <p>pi:<channel>    hash    user id -> user_info (JSON), as the user's first connection gave it
    <p>online          hash    user id -> signed-in connections
    <p>cache:<channel> string  a cache channel's last event (expires after 30 minutes)
    <p>thr:<channel>   string  a subscription count announced less than 5 s ago
    <p>hb:<id>         string  a process's heartbeat (expires unless refreshed)
    <p>hosts           set     processes that may have entries (the sweeper's candidates)
    <p>swept:<id>      string  the process was swept while it lived: it registers again

One Redis (or a primary with replicas), not Redis Cluster: the sweep touches keys it computes.
Every call raises ProviderUnavailable when Redis cannot answer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import orjson
from msgspec import Struct

from core.errors import ProviderUnavailable
from core.provider import Member
from providers.pusherproto.cache import CACHE_SECONDS, CacheEntry
from providers.pusherproto.port import Joined, Left

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from redis.asyncio import Redis

    from core.provider import PresenceData

SWEPT_MARK_SECONDS = 24 * 3600

# Drop one index field and the counters it holds; the user id whose last connection it was.
_LEAVE_FN = """
local function leave(index, field, prefix)
  local uid = redis.call('HGET', index, field)
  local channel = string.sub(field, string.find(field, ' ', 1, true) + 1)
  if not uid then return {tonumber(redis.call('HGET', prefix .. 'subs', channel) or '0'), ''} end
  redis.call('HDEL', index, field)
  local count = redis.call('HINCRBY', prefix .. 'subs', channel, -1)
  if count <= 0 then redis.call('HDEL', prefix .. 'subs', channel); count = 0 end
  local gone = ''
  if uid ~= '' then
    local n = redis.call('HINCRBY', prefix .. 'pu:' .. channel, uid, -1)
    if n <= 0 then
      redis.call('HDEL', prefix .. 'pu:' .. channel, uid)
      redis.call('HDEL', prefix .. 'pi:' .. channel, uid)
      gone = uid
    end
  end
  return {count, gone}
end
local function sign_out(signins, socket, prefix)
  local uid = redis.call('HGET', signins, socket)
  if not uid then return '' end
  redis.call('HDEL', signins, socket)
  if redis.call('HINCRBY', prefix .. 'online', uid, -1) <= 0 then
    redis.call('HDEL', prefix .. 'online', uid)
    return uid
  end
  return ''
end
"""

# KEYS: index, subs, pu, pi, hosts. ARGV: field, channel, user id or "", user_info, host id.
# -> {count, first, roster (flat user id, user_info pairs) when a presence member}
_JOIN = """
redis.call('SADD', KEYS[5], ARGV[5])
local new = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3])
local count
if new == 1 then count = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
else count = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0') end
if ARGV[3] == '' then return {count, 0} end
local first = 0
if new == 1 and redis.call('HINCRBY', KEYS[3], ARGV[3], 1) == 1 then
  first = 1
  redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
end
return {count, first, redis.call('HGETALL', KEYS[4])}
"""

# KEYS: index. ARGV: field, prefix. -> {count, user id whose last connection it was, or ""}
_LEAVE = _LEAVE_FN + "return leave(KEYS[1], ARGV[1], ARGV[2])"

# KEYS: signins, online, hosts. ARGV: socket, user id, host id. -> 1 for the user's first
_SIGN_IN = """
redis.call('SADD', KEYS[3], ARGV[3])
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then return 1 end
return 0
"""

# KEYS: signins. ARGV: socket, prefix. -> the user id if it was its last connection, else ""
_SIGN_OUT = _LEAVE_FN + "return sign_out(KEYS[1], ARGV[1], ARGV[2])"

# KEYS: hb, hosts, swept. ARGV: host id, ttl ms. -> 1 when the process was swept meanwhile
_BEAT = """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[3])
"""

# KEYS: hb, hosts, index, signins, swept. ARGV: host id, prefix, the swept mark's seconds.
# -> flat {channel, user id, ...} of members gone, then "" then the users gone offline; nil when
# the process is alive.
_SWEEP = (
    _LEAVE_FN
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[5], '1', 'EX', ARGV[3])
local out = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[3])) do
  local left = leave(KEYS[3], field, ARGV[2])
  if left[2] ~= '' then
    table.insert(out, string.sub(field, string.find(field, ' ', 1, true) + 1))
    table.insert(out, left[2])
  end
end
table.insert(out, '')
for _, socket in ipairs(redis.call('HKEYS', KEYS[4])) do
  local uid = sign_out(KEYS[4], socket, ARGV[2])
  if uid ~= '' then table.insert(out, uid) end
end
return out
"""
)

# KEYS: the cache key, the pub/sub channel. ARGV: the envelope, the entry, ttl ms. A cache
# channel's publish and its kept event change together, so the kept one is the last delivered.
_PUBLISH_KEPT = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return redis.call('PUBLISH', KEYS[2], ARGV[1])
"""


class Swept(Struct, frozen=True):
    """What a dead process's sweep removed: presence members gone, users gone offline."""

    members: list[tuple[str, str]]  # (channel, user id)
    offline: list[str]


class SharedState:
    """The cluster's channel state in Redis, for one process (`host`)."""

    def __init__(self, redis: Redis, *, prefix: str, host: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.host = host
        self.index = f"{prefix}host:{host}"
        self.signins = f"{prefix}signin:{host}"
        self._join: Any = redis.register_script(_JOIN)
        self._leave: Any = redis.register_script(_LEAVE)
        self._sign_in: Any = redis.register_script(_SIGN_IN)
        self._sign_out: Any = redis.register_script(_SIGN_OUT)
        self._beat: Any = redis.register_script(_BEAT)
        self._sweep: Any = redis.register_script(_SWEEP)
        self.publish_kept: Any = redis.register_script(_PUBLISH_KEPT)

    async def call(self, operation: Awaitable[Any]) -> Any:
        """Await a Redis call; ProviderUnavailable when Redis cannot answer."""
        from redis.exceptions import RedisError

        try:
            return await operation
        except (RedisError, OSError) as exc:
            raise ProviderUnavailable(
                f"the Redis backplane failed: {exc.__class__.__name__}"
            ) from exc

    # -- subscriptions and presence ---------------------------------------------------------
    async def join(self, channel: str, socket_id: str, member: PresenceData | None) -> Joined:
        """Record the socket's subscription; the cluster's count, and for presence the roster
        and whether this is the user's first connection on the channel anywhere."""
        p = self.prefix
        keys = [self.index, p + "subs", f"{p}pu:{channel}", f"{p}pi:{channel}", p + "hosts"]
        uid = "" if member is None else member.user_id
        info = b"" if member is None else orjson.dumps(member.user_info)
        args = [f"{socket_id} {channel}", channel, uid, info, self.host]
        answer = await self.call(self._join(keys=keys, args=args))
        if member is None:
            return Joined(count=int(answer[0]))
        flat = answer[2]
        roster = [
            Member(flat[i].decode(), orjson.loads(flat[i + 1])) for i in range(0, len(flat), 2)
        ]
        return Joined(roster, bool(answer[1]), count=int(answer[0]))

    async def leave(self, channel: str, socket_id: str) -> Left:
        """Drop the socket's subscription; the member gone if it was the user's last."""
        answer = await self.call(
            self._leave(keys=[self.index], args=[f"{socket_id} {channel}", self.prefix])
        )
        gone = answer[1].decode() if answer[1] else None
        return Left(gone or None, int(answer[0]))

    async def sign_in(self, user_id: str, socket_id: str) -> bool:
        """The socket signed in as the user: True for the user's first connection anywhere."""
        keys = [self.signins, self.prefix + "online", self.prefix + "hosts"]
        return bool(await self.call(self._sign_in(keys=keys, args=[socket_id, user_id, self.host])))

    async def sign_out(self, socket_id: str) -> bool:
        """A signed-in socket ended: True when it was its user's last connection anywhere."""
        gone = await self.call(self._sign_out(keys=[self.signins], args=[socket_id, self.prefix]))
        return bool(gone)

    async def online(self, user_ids: Sequence[str]) -> list[str]:
        """Which of these users have a signed-in connection on some process."""
        if not user_ids:
            return []
        found = await self.call(self.redis.hmget(self.prefix + "online", list(user_ids)))
        return [u for u, n in zip(user_ids, found, strict=True) if n is not None]

    # -- what a channel holds ----------------------------------------------------------------
    async def members(self, channel: str) -> list[Member]:
        """A presence channel's users on every process."""
        found = await self.call(self.redis.hgetall(f"{self.prefix}pi:{channel}"))
        return [Member(uid.decode(), orjson.loads(info)) for uid, info in found.items()]

    async def counts(self, channel: str) -> tuple[int, int]:
        """The channel's subscriptions and presence users in the cluster."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.prefix + "subs", channel)
            pipe.hlen(f"{self.prefix}pi:{channel}")
            subs, users = await self.call(pipe.execute())
        return int(subs or 0), int(users)

    async def channel_names(self, prefix: str = "") -> list[str]:
        """The channels with a subscriber somewhere whose names start with `prefix`."""
        names = await self.call(self.redis.hkeys(self.prefix + "subs"))
        return sorted(n for n in (c.decode() for c in names) if n.startswith(prefix))

    async def cached(self, channel: str) -> CacheEntry | None:
        """A cache channel's last published event, if kept."""
        raw = await self.call(self.redis.get(f"{self.prefix}cache:{channel}"))
        if raw is None:
            return None
        event, data, expires = orjson.loads(raw)
        return CacheEntry(event, data, expires)

    def cache_entry(
        self, channel: str, event: str, data: str, now: float
    ) -> tuple[str, bytes, int]:
        """The cache key, the entry and its lifetime (ms) for `publish_kept`."""
        entry = orjson.dumps([event, data, now + CACHE_SECONDS])
        return f"{self.prefix}cache:{channel}", entry, CACHE_SECONDS * 1000

    async def throttle(self, channel: str, *, span: float) -> bool:
        """The channel's turn to announce its count, once per `span` across the cluster."""
        key = f"{self.prefix}thr:{channel}"
        ms = max(1, math.ceil(span * 1000))
        return bool(await self.call(self.redis.set(key, b"1", px=ms, nx=True)))

    # -- this process's entries, its heartbeat, and dead processes ---------------------------
    async def entries(self) -> tuple[dict[str, str], dict[str, str]]:
        """This process's subscriptions (`<socket> <channel>` -> user id or "") and sign-ins
        (socket -> user id) as Redis holds them."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.index)
            pipe.hgetall(self.signins)
            subs, signins = await self.call(pipe.execute())
        return _text(subs), _text(signins)

    async def beat(self, ttl: float) -> bool:
        """Refresh the heartbeat; True when this process was swept since (it must register
        its live sockets again)."""
        p, host = self.prefix, self.host
        keys = [f"{p}hb:{host}", p + "hosts", f"{p}swept:{host}"]
        ms = max(1, math.ceil(ttl * 1000))
        return bool(await self.call(self._beat(keys=keys, args=[host, ms])))

    async def dead_hosts(self) -> list[str]:
        """Processes with entries whose heartbeat has expired."""
        hosts = [h.decode() for h in await self.call(self.redis.smembers(self.prefix + "hosts"))]
        if not hosts:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for host in hosts:
                pipe.exists(f"{self.prefix}hb:{host}")
            alive = await self.call(pipe.execute())
        return [h for h, a in zip(hosts, alive, strict=True) if not a]

    async def sweep(self, host: str) -> Swept | None:
        """Remove a dead process's entries (None: it is alive after all)."""
        p = self.prefix
        keys = [f"{p}hb:{host}", p + "hosts", f"{p}host:{host}", f"{p}signin:{host}"]
        keys.append(f"{p}swept:{host}")
        found = await self.call(self._sweep(keys=keys, args=[host, p, SWEPT_MARK_SECONDS]))
        if found is None:
            return None
        items = [x.decode() for x in found]
        split = items.index("")
        pairs = items[:split]
        members = [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]
        return Swept(members, items[split + 1 :])

    async def forget(self) -> None:
        """This process stops: its heartbeat and its entries go now (its sockets are closed)."""
        p, host = self.prefix, self.host
        await self.call(self.redis.delete(f"{p}hb:{host}"))
        await self.sweep(host)
        await self.call(self.redis.delete(f"{p}swept:{host}"))


def _text(found: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in found.items()}
