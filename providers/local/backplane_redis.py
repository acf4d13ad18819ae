"""Many `relay serve` processes as one, through Redis (RELAY_BACKPLANE=redis, RELAY_REDIS_URL).

Deliveries: every delivery (a publish, a client event, member_added/removed, a subscription
count, a watchlist event, a #server-to-user- send) is PUBLISHed once, as one envelope, to the
Redis channel `<p>c:<relay channel>`; each process listens to the Redis channels of the relay
channels it has subscribers for (SUBSCRIBE on the first, UNSUBSCRIBE after the last) and hands
what it reads to its hub. The publishing process delivers nothing itself, so every subscriber on
every host gets each delivery once, in the one order Redis gave the channel. One Redis channel
per relay channel rather than a few shards: Redis routes a PUBLISH by channel name in constant
time, and a process then reads only the traffic of channels it serves, where a shard would make
every process read, decode and drop the traffic of every channel hashed beside its own.

A process's sends go out through one queue, pipelined in order. `<p>ctl` carries control
messages every process acts on (terminate a user). State is shared.py's; the session's port,
backplane_port.py's.

Liveness: a heartbeat key every BEAT_SECONDS that expires after HEARTBEAT_TTL_SECONDS; each
process sweeps the entries of any process whose heartbeat expired, and announces member_removed
and offline for them, so a SIGKILLed host's members leave within TTL + BEAT seconds.

Outage: when Redis cannot be reached the backplane is down. Sessions' broadcasts (client events,
presence changes, counts, watchlist events) reach this process's own subscribers only; the
backend's publishes, sends to users, terminations and channel queries answer 503; subscriptions
succeed with this process's roster. A reconnection loop listens again to every channel, checks
Redis's record of this process against the hub's, joins and leaves the difference (announcing
members and users who came or went meanwhile), and the backplane is up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Self

import orjson
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from core.errors import ProviderUnavailable
from core.stores.redis import connect
from providers.local.backplane_port import BackplanePort
from providers.local.hub import Delivery
from providers.local.shared import SharedState
from providers.pusherproto.cache import is_cache_channel
from providers.pusherproto.outcome import member_added, member_removed, watchlist_event

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

    from core.provider import Member
    from core.settings import Settings
    from providers.local.hub import Hub, Subscriber
    from providers.pusherproto.cache import CacheEntry
    from providers.pusherproto.outcome import Broadcast
    from providers.pusherproto.state import SessionState

log = logging.getLogger(__name__)

BEAT_SECONDS = 5.0
HEARTBEAT_TTL_SECONDS = 15.0
SUBSCRIBE_WAIT_SECONDS = 2.0  # a join waits this long at most for Redis to confirm a SUBSCRIBE
RECONNECT_SECONDS = (0.1, 2.0)  # the reconnection loop's first and longest pause
BATCH = 256  # sends pipelined in one round trip at most
TIMEOUT_SECONDS = 2.0


class RedisBackplane:
    """Deliveries through Redis pub/sub, channel state in Redis, for one process's hub."""

    def __init__(
        self,
        hub: Hub,
        redis: Redis,
        listener: Redis,
        *,
        prefix: str,
        close_user: Callable[[str], None],
        host: str | None = None,
        beat_seconds: float = BEAT_SECONDS,
        ttl_seconds: float = HEARTBEAT_TTL_SECONDS,
    ) -> None:
        """`redis` runs commands; `listener`, without a read timeout, holds the pub/sub
        connection (it waits for messages as long as none come)."""
        self.hub = hub
        self.redis = redis
        self.listener = listener
        self.prefix = prefix
        host = host or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.shared = SharedState(redis, prefix=prefix, host=host)
        self.host = host
        self.up = False
        self._close_user = close_user
        self._control = f"{prefix}ctl".encode()
        self._beat = beat_seconds
        self._ttl = ttl_seconds
        self._pubsub: PubSub | None = None
        self._pending: dict[bytes, tuple[int, asyncio.Future[None]]] = {}
        self._queue: deque[tuple[Delivery, asyncio.Future[None] | None]] = deque()
        self._sending = False  # a batch is on its way to Redis
        self._wake = asyncio.Event()
        self._broken = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(
        cls, settings: Settings, hub: Hub, *, close_user: Callable[[str], None]
    ) -> Self:
        """Clients for RELAY_REDIS_URL, keys under `relay:bp:<app id>:`."""
        assert settings.redis_url is not None  # load_settings requires it
        redis, listener = clients(settings.redis_url)
        prefix = f"relay:bp:{settings.app_id}:"
        return cls(hub, redis, listener, prefix=prefix, close_user=close_user)

    def port(self, socket: Subscriber, state: SessionState) -> BackplanePort:
        """The session's port for one socket."""
        return BackplanePort(self, socket, state)

    # -- sending ----------------------------------------------------------------------------
    def send(self, delivery: Delivery) -> None:
        """Publish without waiting; while Redis is down, to this process's subscribers only."""
        if not self.up:
            self.hub.deliver(delivery)
            return
        self._queue.append((delivery, None))
        self._wake.set()

    async def publish(self, deliveries: Sequence[Delivery]) -> None:
        """Publish, in order, once Redis has them all; 503 when it cannot."""
        if not self.up:
            raise _unavailable()
        loop = asyncio.get_running_loop()
        done: list[asyncio.Future[None]] = []
        for delivery in deliveries:
            future = loop.create_future()
            self._queue.append((delivery, future))
            done.append(future)
        self._wake.set()
        await asyncio.gather(*done)

    async def terminate(self, user_id: str) -> None:
        """Tell every process (this one included, through Redis) to close the user's sockets."""
        if not self.up:
            self._close_user(user_id)  # what can be done here is done; the caller retries
            raise _unavailable()
        await self.shared.call(
            self.redis.publish(self._control, orjson.dumps(["terminate", user_id]))
        )

    async def _sender(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                self._sending = True
                try:
                    await self._send(batch)
                except (RedisError, OSError) as exc:
                    self.lost(exc)
                    for delivery, future in batch:
                        if future is None:
                            self.hub.deliver(delivery)
                        elif not future.done():
                            future.set_exception(_unavailable())
                    continue
                finally:
                    self._sending = False
                for _, future in batch:
                    if future is not None and not future.done():
                        future.set_result(None)

    async def _send(self, batch: list[tuple[Delivery, asyncio.Future[None] | None]]) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for delivery, _ in batch:
                wire = self._wire(delivery.channel)
                envelope = encode(delivery)
                if delivery.published and is_cache_channel(delivery.channel):
                    key, entry, ms = self.shared.cache_entry(
                        delivery.channel, delivery.event, delivery.data, now
                    )
                    await self.shared.publish_kept(
                        keys=[key, wire], args=[envelope, entry, ms], client=pipe
                    )
                else:
                    pipe.publish(wire, envelope)
            await pipe.execute()

    # -- listening --------------------------------------------------------------------------
    def _wire(self, channel: str) -> bytes:
        return f"{self.prefix}c:{channel}".encode()

    async def listen(self, channel: str) -> None:
        """Listen to the channel on Redis (when this process has just got its first subscriber
        there), waiting for Redis's confirmation while it is up: what is published after a
        subscription succeeds reaches it."""
        wire = self._wire(channel)
        pending = self._pending.get(wire)
        if self.hub.subscriber_count(channel) == 1 and self._pubsub is not None:
            future = pending[1] if pending else asyncio.get_running_loop().create_future()
            self._pending[wire] = (pending[0] + 1 if pending else 1, future)
            pending = self._pending[wire]
            try:
                await self._pubsub.subscribe(wire)
            except (RedisError, OSError) as exc:
                self.lost(exc)
                return
        if pending is not None and self.up:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending[1]), SUBSCRIBE_WAIT_SECONDS)

    def unlisten(self, channel: str) -> None:
        """Stop listening once this process has no subscriber left on the channel."""
        if self.hub.subscriber_count(channel) or self._pubsub is None:
            return
        task = asyncio.get_running_loop().create_task(self._unsubscribe(channel))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _unsubscribe(self, channel: str) -> None:
        # Checked again when it runs: a subscriber who joined meanwhile keeps the channel heard.
        if self._pubsub is not None and not self.hub.subscriber_count(channel):
            try:
                await self._pubsub.unsubscribe(self._wire(channel))
            except (RedisError, OSError) as exc:
                self.lost(exc)

    def _confirmed(self, wire: bytes) -> None:
        pending = self._pending.get(wire)
        if pending is None:
            return
        left, future = pending[0] - 1, pending[1]
        if left > 0:
            self._pending[wire] = (left, future)
            return
        del self._pending[wire]
        if not future.done():
            future.set_result(None)

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind, wire = message["type"], message["channel"]
            if kind == "message":
                if wire == self._control:
                    self._act(message["data"])
                else:
                    self.hub.deliver(decode(message["data"]))
            elif kind == "subscribe":
                self._confirmed(wire)

    def _act(self, data: bytes) -> None:
        kind, user_id = orjson.loads(data)
        if kind == "terminate":
            self._close_user(user_id)

    # -- connection, outage and recovery ----------------------------------------------------
    def lost(self, exc: BaseException | None = None) -> None:
        """Redis failed a call: down until the reconnection loop is through."""
        if self.up:
            log.warning("backplane: Redis failed (%s): down", type(exc).__name__)
        self.up = False
        self._broken.set()

    async def start(self) -> None:
        """Start the connection loop, the sender and the heartbeat; wait (a little) to be up."""
        loop = asyncio.get_running_loop()
        for work in (self._connection(), self._sender(), self._heartbeat()):
            self._tasks.append(loop.create_task(work))
        for _ in range(int(TIMEOUT_SECONDS / 0.02)):
            if self.up:
                return
            await asyncio.sleep(0.02)
        log.warning("backplane: Redis not reachable yet; retrying in the background")

    async def _connection(self) -> None:
        pause = RECONNECT_SECONDS[0]
        while True:
            try:
                await self._session()
            except (RedisError, OSError, ProviderUnavailable, TimeoutError) as exc:
                if pause == RECONNECT_SECONDS[0]:
                    log.warning(
                        "backplane: Redis unreachable (%s): reconnecting", type(exc).__name__
                    )
                self.lost(exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_SECONDS[1])
            if self.up:
                pause = RECONNECT_SECONDS[0]

    async def _session(self) -> None:
        """Listen, register, serve until Redis fails."""
        self._broken.clear()
        pubsub = self.listener.pubsub()
        reader: asyncio.Task[None] | None = None
        try:
            wires = [self._control, *(self._wire(c) for c in self.hub.channel_names())]
            loop = asyncio.get_running_loop()
            self._pending = {wire: (1, loop.create_future()) for wire in wires}
            waits = [future for _, future in self._pending.values()]
            await pubsub.subscribe(*wires)
            reader = loop.create_task(self._read(pubsub))
            await asyncio.wait_for(asyncio.gather(*waits), TIMEOUT_SECONDS)
            self._pubsub = pubsub
            await self.shared.beat(self._ttl)
            self.up = True
            await self._register()
            log.info("backplane: up as %s", self.host)
            broken = loop.create_task(self._broken.wait())
            await asyncio.wait([reader, broken], return_when=asyncio.FIRST_COMPLETED)
            broken.cancel()
            if reader.done():
                reader.result()  # the error that ended it
        finally:
            self.up = False
            self._pubsub = None
            if reader is not None:
                reader.cancel()
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _register(self) -> None:
        """Make Redis's record of this process what the hub holds, announcing the difference."""
        subs, signins = await self.shared.entries()
        live = {
            f"{sub.socket_id} {channel}": (channel, sub, member)
            for sub, channel, member in self.hub.entries()
        }
        news: list[Broadcast] = []
        for field in subs.keys() - live.keys():
            socket_id, _, channel = field.partition(" ")
            left = await self.shared.leave(channel, socket_id)
            if left.user_id is not None:
                news.append(member_removed(channel, left.user_id))
        for field in live.keys() - subs.keys():
            channel, sub, member = live[field]
            joined = await self.shared.join(channel, sub.socket_id, member)
            if member is not None and joined.first:
                news.append(member_added(channel, member))
        signed = dict(self.hub.sign_ins())
        for socket_id in signins.keys() - signed.keys():
            if await self.shared.sign_out(socket_id):
                news.append(watchlist_event(signins[socket_id], "offline"))
        for socket_id in signed.keys() - signins.keys():
            if await self.shared.sign_in(signed[socket_id], socket_id):
                news.append(watchlist_event(signed[socket_id], "online"))
        if news:
            await self.publish([Delivery.of(b, sender=None) for b in news])

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._beat)
            if not self.up:
                continue
            try:
                if await self.shared.beat(self._ttl):
                    await self._register()  # swept while alive (a stall): back in
                await self._sweep()
            except ProviderUnavailable as exc:
                self.lost(exc)

    async def _sweep(self) -> None:
        """Remove the entries of processes whose heartbeat expired, and say who left."""
        for host in await self.shared.dead_hosts():
            if host == self.host:
                continue
            swept = await self.shared.sweep(host)
            if swept is None:
                continue
            log.info("backplane: swept %s (%d members)", host, len(swept.members))
            news = [member_removed(channel, user_id) for channel, user_id in swept.members]
            news += [watchlist_event(user_id, "offline") for user_id in swept.offline]
            if news:
                await self.publish([Delivery.of(b, sender=None) for b in news])

    # -- queries ------------------------------------------------------------------------------
    async def members(self, channel: str) -> list[Member]:
        """The roster of every process."""
        self._refuse_if_down()
        return await self.shared.members(channel)

    async def counts(self, channel: str) -> tuple[int, int]:
        """The cluster's subscriptions and presence users."""
        self._refuse_if_down()
        return await self.shared.counts(channel)

    async def channel_names(self, prefix: str = "") -> list[str]:
        """The cluster's channels."""
        self._refuse_if_down()
        return await self.shared.channel_names(prefix)

    async def cached(self, channel: str) -> CacheEntry | None:
        """The cluster's kept event."""
        self._refuse_if_down()
        return await self.shared.cached(channel)

    def _refuse_if_down(self) -> None:
        if not self.up:
            raise _unavailable()

    async def aclose(self) -> None:
        """Leave: what is queued goes out, then this process's entries and heartbeat (its
        sockets are closed by now, their member_removed queued)."""
        for _ in range(int(TIMEOUT_SECONDS / 0.01)):
            if not (self.up and (self._queue or self._sending)):
                break
            await asyncio.sleep(0.01)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(ProviderUnavailable):
            await self.shared.forget()
        for client in (self.redis, self.listener):
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


def clients(url: str) -> tuple[Redis, Redis]:
    """The command client and the listener's (no read timeout) for a Redis URL, each pool
    bounded (core.stores.redis.connect: RELAY_REDIS_URL's `max_connections`). No retries inside
    redis-py: a failed call is an outage, which the reconnection loop ends."""
    options: dict[str, Any] = {
        "socket_connect_timeout": TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 0),
    }
    return connect(url, socket_timeout=TIMEOUT_SECONDS, **options), connect(url, **options)


def encode(delivery: Delivery) -> bytes:
    """The envelope of one delivery: what every process needs to deliver it."""
    frame = delivery.pusher_frame() if delivery.channelless else None
    return orjson.dumps(
        [
            delivery.event,
            delivery.channel,
            delivery.data,
            delivery.exclude,
            delivery.user_id,
            delivery.json,
            frame,
            delivery.history_id,
        ]
    )


def decode(envelope: bytes) -> Delivery:
    """The delivery an envelope carries."""
    event, channel, data, exclude, user_id, json, frame, *rest = orjson.loads(envelope)
    return Delivery(
        event,
        channel,
        data,
        exclude=exclude,
        user_id=user_id,
        json=json,
        channelless=frame,
        history_id=rest[0] if rest else None,  # a host of the previous release sends none
    )


def _unavailable() -> ProviderUnavailable:
    return ProviderUnavailable(
        "the Redis backplane is unreachable: nothing was delivered; retry", retry_after=1
    )
