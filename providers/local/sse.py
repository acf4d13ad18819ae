"""Server-sent events: `connected`, then events and heartbeats; resume by Last-Event-ID.

A stream of one channel whose history the relay keeps (core/history.py: the policy grants
`history` there) gives each published event its history id (`<epoch>:<seq>`) and resumes from
one out of the store, across restarts and hosts; when the history cannot continue from it, the
stream says `{"type": "gap", "channel"}` before the live events. Other events (client events,
and every event of other streams) carry this process's ids (`<epoch>-<seq>`), resumed from its
replay log.

On a presence channel the stream joins the roster as its caller, with the user_id and user_info
that /auth/channel would sign for that user (the route passes them in): WebSocket members get
`pusher_internal:member_added` when the stream opens, and `member_removed` when the user's last
socket or stream on the channel closes. The stream itself carries application events only, never
presence changes (member_added, member_removed, the roster): an SSE client that wants the roster
asks `GET /v1/channels/{channel}/members`.

`SseStream` decides every frame of a stream, once, and hands it to a `Wire`, one of two drivers:
under `relay serve` the HTTP connection's own transport (providers/local/sse_transport.py: the hub's
`deliver` writes the frame, built once per broadcast, and an idle stream has no task and no
queue); under any other ASGI server a streaming response's body (`SseStream.frames`, a queue read
by a generator). Heartbeats come from one timer per event loop (`Heartbeats`), not one per stream.
A consumer too slow to keep up is cut off, after what it already has, with no gap: EventSource
reconnects with the last id it got and the replay log fills in.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import weakref
from typing import TYPE_CHECKING, Protocol

import orjson

from core.errors import BadRequest, HistoryGap
from core.history import is_id
from core.webhooks.sink import emit
from providers.local.hub import Delivery
from providers.pusherproto.outcome import joined_hooks, left_hooks, member_added, member_removed
from providers.pusherproto.state import SessionState, new_socket_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from core.history import ChannelHistory
    from core.provider import PresenceData
    from providers.local.admission import Ticket
    from providers.local.provider import LocalProvider
    from providers.pusherproto.port import SessionPort

RETRY_MS = 3000
# On shutdown a stream ends with `retry: 250..999`: soon enough to land on the next process within
# a second of its start, spread so that every EventSource does not reconnect in the same instant.
DRAIN_RETRY_MIN_MS = 250
DRAIN_RETRY_SPREAD_MS = 750
HEARTBEAT = b": heartbeat\n\n"
# What `Hub.event_id` writes, with room for another release's epoch: ASCII only (`\d` and
# `str.isdigit` take other scripts' digits, which `int` then refuses or reads differently).
_EVENT_ID = re.compile(r"(?P<epoch>[0-9A-Za-z]{1,32})-(?P<seq>[0-9]{1,20})", re.ASCII)
_leaving: set[asyncio.Task[None]] = set()  # streams' leaves under way (kept from the GC)


class Wire(Protocol):
    """Where a stream's frames go: its connection's transport, or a streaming response's body."""

    def send(self, frame: bytes) -> None:
        """A frame of the stream's own: `connected`, what it resumes, `retry:`."""

    def push(self, frame: bytes) -> bool:
        """A live event's frame; False when the client is too far behind to take it."""

    def heartbeat(self) -> None:
        """A heartbeat comment, unless the client has frames still waiting to be read."""

    def finish(self, *, cut: bool) -> None:
        """End the response after what was written; `cut`: because the client fell behind."""


class SseStream:
    """One EventSource client: a hub subscriber that writes each event's frame to its wire."""

    __slots__ = (
        "__weakref__",
        "_beats",
        "_done",
        "_early",
        "_ending",
        "_epoch",
        "_history",
        "_last_seq",
        "_leaving",
        "_limit",
        "_overflowed",
        "_port",
        "_presence",
        "_quiet",
        "_replayed",
        "_sent",
        "_since",
        "_wanted",
        "_wire",
        "channels",
        "provider",
        "socket_id",
        "ticket",
    )

    def __init__(
        self,
        provider: LocalProvider,
        channels: list[str],
        last_event_id: str | None,
        *,
        presence: Mapping[str, PresenceData] | None = None,
        history: ChannelHistory | None = None,
    ) -> None:
        self.provider = provider
        self._presence = dict(presence or {})  # channel -> the member this stream joins as
        self.socket_id = new_socket_id()
        self.channels: set[str] = set()
        self._wanted = channels
        self._epoch = provider.hub.epoch
        # The channel history to resume from, for a stream of one channel the relay records.
        self._history = (
            history
            if history is not None and len(channels) == 1 and history.records(channels[0])
            else None
        )
        self._since: str | None = None  # a history id to resume after
        self._last_seq: int | None = None  # a replay log id's number to resume after
        if self._history is not None and last_event_id and is_id(last_event_id):
            self._since = last_event_id
        else:
            self._last_seq = _seq_after(last_event_id, provider.hub.epoch, provider.hub.last_seq)
        self._limit = provider.settings.send_buffer_frames
        self.ticket: Ticket | None = None  # the admission's, given back when the stream is over
        self._wire: Wire | None = None
        self._port: SessionPort | None = None
        # Deliveries that arrive while the stream opens, sent after what it resumes (bounded).
        self._early: list[Delivery] | None = []
        self._replayed: set[str] | None = None  # history ids sent from the history
        self._sent = 0  # the replay log's number sent up to (0: nothing from the log)
        self._quiet = 0  # heartbeat ticks since the last frame
        self._beats: Heartbeats | None = None
        self._overflowed = False
        self._ending = False  # ended while it was opening
        self._done = False
        self._leaving: asyncio.Task[None] | None = None

    # -- what the hub and the provider see (hub.Stream) -------------------------------------
    def deliver(self, delivery: Delivery) -> None:
        """Write an application event's frame; presence bookkeeping is not sent over SSE."""
        if self._done or delivery.internal:
            return
        early = self._early
        if early is None:
            self._live(delivery)
        elif len(early) < self._limit:
            early.append(delivery)
        else:
            self._overflowed = True  # cut off once what came before the bound is sent

    def end(self) -> None:
        """End the stream after what was written, telling EventSource to reconnect soon."""
        if self._done or self._wire is None:
            return
        if self._early is not None:
            self._ending = True  # once it has opened
            return
        retry = DRAIN_RETRY_MIN_MS + secrets.randbelow(DRAIN_RETRY_SPREAD_MS)
        self._wire.send(b"retry: %d\n\n" % retry)
        self._finish(cut=False)

    # -- the stream's life ------------------------------------------------------------------
    async def open(self, wire: Wire) -> None:
        """Join the channels, then send `connected`, what Last-Event-ID missed and what arrived
        meanwhile; from then on each delivery is written as it arrives."""
        self._wire = wire
        provider = self.provider
        provider.streams.add(self)
        if provider.draining:  # drain() ran between the route's check and now
            self._ending = True
        port = self._port = provider.session_port(self, SessionState(self.socket_id))
        failed = True
        try:
            for channel in self._wanted:
                member = self._presence.get(channel)
                joined = await port.join(channel, member)
                if joined.first and member is not None:
                    added = member_added(channel, member)
                    provider.broadcast(Delivery.of(added, sender=self.socket_id))
                emit(joined_hooks(channel, member, joined, _now_ms()))
            if not self._done:
                hello = {"type": "connected", "socket_id": self.socket_id, "channels": self._wanted}
                wire.send(b"retry: %d\ndata: %s\n\n" % (RETRY_MS, orjson.dumps(hello)))
                await self._from_history(wire)
                self._from_replay_log(wire)
            failed = False
        finally:
            early, self._early = self._early or [], None
            if failed or self._done:  # the client left (or the driver stopped) while it opened
                self.close()
        for delivery in early:
            if self._done:
                return
            self._live(delivery)
        if self._done:
            return
        if self._overflowed:
            self._finish(cut=True)
        elif self._ending:
            self.end()
        else:
            self._beats = Heartbeats.of(provider.settings.sse_heartbeat_seconds)
            self._beats.add(self)

    def close(self) -> asyncio.Task[None] | None:
        """The stream is over (ended, cut off, or its client left): give the admission ticket
        back and leave every channel, announcing members who left for good. Idempotent; the
        leave's task, once there is one to wait for."""
        if not self._done:
            self._done = True
            self.provider.streams.discard(self)
            if self._beats is not None:
                self._beats.discard(self)
            if self.ticket is not None:
                self.ticket.release()
        # Joins still under way finish first: `open` calls this again when they have.
        if self._leaving is None and self._port is not None and self._early is None:
            left = self._leaving = asyncio.get_running_loop().create_task(self._leave(self._port))
            _leaving.add(left)
            left.add_done_callback(_leaving.discard)
        return self._leaving

    def beat(self) -> None:
        """A heartbeat tick (half the heartbeat interval): a heartbeat after two quiet ones."""
        self._quiet += 1
        if self._quiet >= 2 and self._wire is not None:
            self._quiet = 0
            self._wire.heartbeat()

    def _live(self, delivery: Delivery) -> None:
        if self._replayed and delivery.history_id in self._replayed:
            return  # already sent from the history
        if delivery.seq <= self._sent:
            return  # already sent from the replay log
        if self._history is not None and delivery.history_id is not None:
            frame = delivery.sse_history_frame()
        else:
            frame = delivery.sse_frame(self._epoch)
        self._quiet = 0
        assert self._wire is not None
        if not self._wire.push(frame):
            self._finish(cut=True)

    def _finish(self, *, cut: bool) -> None:
        if self._done:
            return
        assert self._wire is not None
        self._wire.finish(cut=cut)
        self.close()

    async def _from_history(self, wire: Wire) -> None:
        """What followed Last-Event-ID in the channel's history (whose ids go in `_replayed`),
        or a gap frame when the history cannot say. Runs after the subscription, so what is
        published meanwhile waits in `_early`, and is sent unless it was replayed here."""
        history, since = self._history, self._since
        if history is None or since is None:
            return
        channel = self._wanted[0]
        replayed = self._replayed = set()
        while since is not None and not self._done:
            try:
                page = await history.read(channel, since=since, limit=history.keep)
            except HistoryGap:
                wire.send(b"data: %s\n\n" % orjson.dumps({"type": "gap", "channel": channel}))
                return
            for message in page.messages:
                assert message.history_id is not None
                replayed.add(message.history_id)
                wire.send(
                    Delivery(
                        message.name,
                        channel,
                        message.data,
                        json=message.json,
                        history_id=message.history_id,
                    ).sse_history_frame()
                )
            since = page.next

    def _from_replay_log(self, wire: Wire) -> None:
        """What followed Last-Event-ID in this process's replay log, every channel merged."""
        if self._last_seq is None:
            return
        hub = self.provider.hub
        self._sent = self._last_seq
        missed = sorted(
            (d for c in self._wanted for d in hub.replay(c, self._last_seq)), key=lambda d: d.seq
        )
        for old in missed:
            wire.send(old.sse_frame(self._epoch))
            self._sent = old.seq

    async def _leave(self, port: SessionPort) -> None:
        for channel in sorted(self.channels):
            left = await port.leave(channel)
            if left.user_id is not None:
                removed = member_removed(channel, left.user_id)
                self.provider.broadcast(Delivery.of(removed, sender=None))
            emit(left_hooks(channel, left, _now_ms()))

    # -- the driver for a streaming response ------------------------------------------------
    def __aiter__(self) -> AsyncIterator[bytes]:
        """The stream as a response body: where no connection is lent (see the module)."""
        return self.frames()

    async def frames(self) -> AsyncIterator[bytes]:
        """The body, frame by frame, through a bounded queue; the leave is waited for."""
        wire = _Queued(self._limit)
        try:
            await self.open(wire)
            while (frame := await wire.get()) is not None:
                yield frame
        finally:
            left = self.close()
            if left is not None:
                # Shielded: when the client went away, the response's cancellation reaches
                # every wait here, and the leaves must still happen.
                await asyncio.shield(left)


class _Queued:
    """A streaming response's wire: frames queued for its body's generator. Live events
    waiting past `limit` mean the client is too slow (the response writes at its pace)."""

    __slots__ = ("_limit", "_live", "_queue")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._live = 0  # live events queued
        self._queue: asyncio.Queue[tuple[bytes, bool] | None] = asyncio.Queue()

    def send(self, frame: bytes) -> None:
        """Queue a frame of the stream's own."""
        self._queue.put_nowait((frame, False))

    def push(self, frame: bytes) -> bool:
        """Queue a live event, unless `limit` of them wait already."""
        if self._live >= self._limit:
            return False
        self._live += 1
        self._queue.put_nowait((frame, True))
        return True

    def heartbeat(self) -> None:
        """A heartbeat, when nothing waits."""
        if self._queue.empty():
            self.send(HEARTBEAT)

    def finish(self, *, cut: bool) -> None:
        """End the body after what is queued."""
        self._queue.put_nowait(None)

    async def get(self) -> bytes | None:
        """The next frame; None at the end."""
        item = await self._queue.get()
        if item is None:
            return None
        frame, live = item
        self._live -= live
        return frame


class Heartbeats:
    """The live streams of one event loop and one heartbeat interval, beaten by one timer that
    ticks twice per interval while there are any: a stream quiet for two ticks gets a heartbeat,
    so none is silent for longer than the interval."""

    __slots__ = ("_streams", "_tick", "_timer")

    def __init__(self, interval: float) -> None:
        # No reference to the loop: the registry holds these by loop, weakly.
        self._tick = interval / 2
        self._streams: dict[SseStream, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, interval: float) -> Heartbeats:
        """The running loop's heartbeats of this interval."""
        loop = asyncio.get_running_loop()
        found = _heartbeats.setdefault(loop, {})
        beats = found.get(interval)
        if beats is None:
            beats = found[interval] = cls(interval)
        return beats

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: SseStream) -> None:
        """Beat this stream from now on."""
        self._streams[stream] = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._tick, self._beat)

    def discard(self, stream: SseStream) -> None:
        """Stop beating it; the timer stops with the last stream."""
        self._streams.pop(stream, None)
        if not self._streams and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _beat(self) -> None:
        self._timer = None
        for stream in list(self._streams):
            stream.beat()
        if self._streams and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._tick, self._beat)


_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Heartbeats]] = (
    weakref.WeakKeyDictionary()
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _seq_after(last_event_id: str | None, epoch: str, newest: int) -> int | None:
    """The sequence number to resume after, if the id comes from this process's epoch.

    An id of another epoch (a restarted process), or one ahead of the newest delivery (sent by
    no relay), is well formed and replays nothing; resuming after it would hold back every
    live event up to it. An id of no shape the relay ever sends is a client bug, refused before
    the stream starts."""
    if not last_event_id:
        return None
    found = _EVENT_ID.fullmatch(last_event_id)
    if found is None:
        raise BadRequest("Last-Event-ID is not an id this relay sends (<epoch>-<number>)")
    seq = int(found["seq"])
    if found["epoch"] != epoch or seq > newest:
        return None
    return seq
