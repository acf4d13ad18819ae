"""The Redis stream queue: durable across restarts, one delivering process at a time.

Every process of an app XADDs its events to one stream (`relay:webhooks:<app id>:stream`, capped
near ten times `queue_events`). One process at a time, the one holding the lease (a key it renews),
reads the stream after the cursor (`...:cursor`, the last entry everything before which is done)
into its schedule and delivers: so each channel's order and the member_removed hold hold across
the cluster (a user who drops on host A and rejoins on host B cancels the pair), and a process that
dies leaves its lease to expire and the next one to resume from the cursor. Delivery is at least
once: what was delivered after the cursor's entry is delivered again after a takeover. A batch no
URL took after every attempt goes to `...:dead` (XRANGE it to see what was lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from core.provider import ChannelEvent
from core.webhooks.dispatcher import Dispatcher

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from redis.asyncio import Redis

    from core.webhooks.config import WebhookConfig
    from core.webhooks.delivery import Sender
    from core.webhooks.schedule import Entry

log = logging.getLogger(__name__)

PREFIX = "relay:webhooks:"
LEASE_SECONDS = 10.0
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ChannelEvent).decode


class RedisStreamSink(Dispatcher):
    """A Sink whose queue is a Redis stream, delivered by the lease holder."""

    drain_seconds = 10.0

    def __init__(
        self,
        config: WebhookConfig,
        sender: Sender,
        *,
        url: str | None = None,
        client: Redis | None = None,
        prefix: str = PREFIX,
        lease_seconds: float = LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, sender, clock=clock)
        self._url = url
        self._redis = client
        self.stream, self.cursor_key = prefix + "stream", prefix + "cursor"
        self.lease_key, self.dead = prefix + "lease", prefix + "dead"
        self.lease_seconds = lease_seconds
        self.me = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.leading = False
        self._buffer: list[bytes] = []
        self._writer: asyncio.Task[None] | None = None
        self._leader: asyncio.Task[None] | None = None
        self._read: deque[str] = deque()  # ids read, in order, not yet released
        self._done: set[str] = set()
        self.cursor = "0-0"
        self.dropped = 0  # events refused while Redis was unreachable and the buffer full

    # -- producing --------------------------------------------------------------------------
    def put(self, events: Sequence[ChannelEvent]) -> None:
        """Filter, buffer, and XADD in a task of its own; never waits."""
        for event in events:
            if self.filter.keeps(event):
                if len(self._buffer) >= self.config.queue_events:
                    self.dropped += 1
                    if self.dropped == 1 or self.dropped % 1000 == 0:
                        log.warning(
                            "webhooks: Redis unreachable, buffer full: %d events dropped so far",
                            self.dropped,
                        )
                    continue
                self._buffer.append(_encode(event))
        if self._buffer and self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def settle(self) -> None:
        """Wait until the buffered events are on the stream."""
        while (writer := self._writer) is not None and not writer.done():
            await asyncio.shield(writer)

    async def _write(self) -> None:
        try:
            while self._buffer:
                batch, self._buffer = self._buffer, []
                try:
                    async with self._client().pipeline(transaction=False) as pipe:
                        for raw in batch:
                            pipe.xadd(
                                self.stream,
                                {"e": raw},
                                maxlen=self.config.queue_events * 10,
                                approximate=True,
                            )
                        await pipe.execute()
                except Exception as exc:  # the events wait in the buffer for the next try
                    log.warning("webhooks: XADD failed (%s); retrying", type(exc).__name__)
                    self._buffer[:0] = batch
                    await asyncio.sleep(1.0)
        finally:
            self._writer = None

    # -- delivering -------------------------------------------------------------------------
    async def start(self) -> None:
        """Contend for the lease, and deliver while holding it."""
        if self._leader is None:
            self._leader = asyncio.get_running_loop().create_task(self._lead())

    async def _lead(self) -> None:
        redis = self._client()
        lease_ms = int(self.lease_seconds * 1000)
        while True:
            try:
                if await redis.set(self.lease_key, self.me, nx=True, px=lease_ms):
                    await self._deliver_while_leading(redis, lease_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhooks: Redis stream delivery interrupted (%s)", type(exc).__name__)
            finally:
                self._stop_leading()
            await asyncio.sleep(self.lease_seconds / 3)

    async def _deliver_while_leading(self, redis: Redis, lease_ms: int) -> None:
        self.leading = True
        stored = await redis.get(self.cursor_key)
        self.cursor = stored.decode() if isinstance(stored, bytes) else "0-0"
        last = self.cursor
        self.launch()
        renew_every = self.lease_seconds / 3
        renewed = asyncio.get_running_loop().time()
        while True:
            now = asyncio.get_running_loop().time()
            if now - renewed >= renew_every:
                if not await redis.eval(_RENEW, 1, self.lease_key, self.me, lease_ms):
                    log.warning("webhooks: the stream's lease went to another process")
                    return
                renewed = now
            block = int(renew_every * 1000)
            answer: Any = await redis.xread({self.stream: last}, count=100, block=block)
            for _, entries in answer or []:
                for raw_id, fields in entries:
                    entry_id = raw_id.decode()
                    last = entry_id
                    self._read.append(entry_id)
                    self.enqueue(_decode(fields[b"e"]), ref=entry_id)

    def _stop_leading(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.leading = False
        self.schedule.clear()
        self._read.clear()
        self._done.clear()

    def released(self, entries: Sequence[Entry], *, delivered: bool) -> None:
        """Record what is done; the cursor moves past every leading entry that is."""
        if not delivered:
            lost = [e for e in entries if e.ref is not None]
            if lost:
                asyncio.get_running_loop().create_task(self._bury(lost))
        self._done.update(e.ref for e in entries if e.ref is not None)
        moved = None
        while self._read and self._read[0] in self._done:
            moved = self._read.popleft()
            self._done.discard(moved)
        if moved is not None:
            self.cursor = moved
            asyncio.get_running_loop().create_task(self._advance(moved))

    async def _advance(self, cursor: str) -> None:
        with contextlib.suppress(Exception):  # a later advance, or the next leader, redoes it
            redis = self._client()
            if await redis.get(self.lease_key) == self.me.encode():
                await redis.set(self.cursor_key, cursor)
                await redis.xtrim(self.stream, minid=cursor, approximate=False)

    async def _bury(self, entries: Sequence[Entry]) -> None:
        with contextlib.suppress(Exception):
            async with self._client().pipeline(transaction=False) as pipe:
                for entry in entries:
                    pipe.xadd(self.dead, {"e": _encode(entry.event)}, maxlen=10_000)
                await pipe.execute()

    async def aclose(self) -> None:
        """Finish writing (within the drain bound), stop delivering and release the lease: what
        this process had read and not delivered stays on the stream after the cursor, for the
        next lease holder."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.drain_seconds):
                await self.settle()
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():  # Redis still unreachable: give up
            log.warning("webhooks: %d events not written to Redis at shutdown", len(self._buffer))
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
        leader, self._leader = self._leader, None
        if leader is not None:
            leader.cancel()
            with contextlib.suppress(BaseException):
                await leader
        await self.sender.aclose()
        with contextlib.suppress(Exception):
            await self._client().eval(_RELEASE, 1, self.lease_key, self.me)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None

    def _client(self) -> Redis:
        if self._redis is None:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(self._url or "redis://127.0.0.1:6379/0")
        return self._redis
