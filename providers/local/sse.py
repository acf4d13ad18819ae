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
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import TYPE_CHECKING

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
    from providers.local.provider import LocalProvider
    from providers.pusherproto.port import SessionPort

RETRY_MS = 3000
# On shutdown a stream ends with `retry: 250..999`: soon enough to land on the next process within
# a second of its start, spread so that every EventSource does not reconnect in the same instant.
DRAIN_RETRY_MIN_MS = 250
DRAIN_RETRY_SPREAD_MS = 750
# What `Hub.event_id` writes, with room for another release's epoch: ASCII only (`\d` and
# `str.isdigit` take other scripts' digits, which `int` then refuses or reads differently).
_leaving: set[asyncio.Task[None]] = set()  # streams' leaves under way (kept from the GC)
_EVENT_ID = re.compile(r"(?P<epoch>[0-9A-Za-z]{1,32})-(?P<seq>[0-9]{1,20})", re.ASCII)


class SseStream:
    """One EventSource client: a hub subscriber whose frames feed a streaming response."""

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
        # Bounded by `deliver`; None, put by `end`, ends the stream.
        self._queue: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self._limit = provider.settings.send_buffer_frames
        self._overflowed = False

    def deliver(self, delivery: Delivery) -> None:
        """Queue an application event; presence bookkeeping is not sent over SSE."""
        if delivery.internal or self._overflowed:
            return
        if self._queue.qsize() >= self._limit:
            # A consumer this slow is cut off after what it already has queued, with no gap:
            # EventSource reconnects with the last id it got and the replay log fills in.
            self._overflowed = True
            return
        self._queue.put_nowait(delivery)

    def end(self) -> None:
        """End the stream after what is queued, telling EventSource to reconnect soon."""
        self._queue.put_nowait(None)

    async def frames(self) -> AsyncIterator[bytes]:
        """The response body; unsubscribes when the client goes away."""
        hub = self.provider.hub
        heartbeat = self.provider.settings.sse_heartbeat_seconds
        self.provider.streams.add(self)
        if self.provider.draining:  # drain() ran between the route's check and this first read
            self.end()
        port = self.provider.session_port(self, SessionState(self.socket_id))
        try:
            for channel in self._wanted:
                member = self._presence.get(channel)
                joined = await port.join(channel, member)
                if joined.first and member is not None:
                    added = member_added(channel, member)
                    self.provider.broadcast(Delivery.of(added, sender=self.socket_id))
                emit(joined_hooks(channel, member, joined, _now_ms()))
            hello = {"type": "connected", "socket_id": self.socket_id, "channels": self._wanted}
            yield b"retry: %d\ndata: %s\n\n" % (RETRY_MS, orjson.dumps(hello))
            replayed: set[str] = set()
            async for frame in self._from_history(replayed):
                yield frame
            sent = self._last_seq
            if sent is not None:
                missed = sorted(
                    (d for c in self._wanted for d in hub.replay(c, sent)), key=lambda d: d.seq
                )
                for old in missed:
                    yield old.sse_frame(hub.epoch)
                    sent = old.seq
            while True:
                if self._overflowed and self._queue.empty():
                    return  # everything queued before the cut-off was sent
                try:
                    delivery = await asyncio.wait_for(self._queue.get(), heartbeat)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if delivery is None:
                    retry = DRAIN_RETRY_MIN_MS + secrets.randbelow(DRAIN_RETRY_SPREAD_MS)
                    yield b"retry: %d\n\n" % retry
                    return
                if delivery.history_id is not None and delivery.history_id in replayed:
                    continue  # already sent from the history
                if sent is not None and delivery.seq <= sent:
                    continue  # already sent from the replay log
                if self._history is not None and delivery.history_id is not None:
                    yield delivery.sse_history_frame()
                else:
                    yield delivery.sse_frame(hub.epoch)
        finally:
            self.provider.streams.discard(self)
            # A task of its own, waited for but shielded: when the client went away, the
            # response's cancellation reaches every wait here, and the leaves must still happen.
            left = asyncio.get_running_loop().create_task(self._leave(port))
            _leaving.add(left)
            left.add_done_callback(_leaving.discard)
            await asyncio.shield(left)

    async def _from_history(self, replayed: set[str]) -> AsyncIterator[bytes]:
        """What followed Last-Event-ID in the channel's history (whose ids go in `replayed`),
        or a gap frame when the history cannot say. Runs after the subscription, so what is
        published meanwhile is queued, and sent unless it was replayed here."""
        history, since = self._history, self._since
        if history is None or since is None:
            return
        channel = self._wanted[0]
        while since is not None:
            try:
                page = await history.read(channel, since=since, limit=history.keep)
            except HistoryGap:
                yield b"data: %s\n\n" % orjson.dumps({"type": "gap", "channel": channel})
                return
            for message in page.messages:
                assert message.history_id is not None
                replayed.add(message.history_id)
                yield Delivery(
                    message.name,
                    channel,
                    message.data,
                    json=message.json,
                    history_id=message.history_id,
                ).sse_history_frame()
            since = page.next

    async def _leave(self, port: SessionPort) -> None:
        for channel in sorted(self.channels):
            left = await port.leave(channel)
            if left.user_id is not None:
                removed = member_removed(channel, left.user_id)
                self.provider.broadcast(Delivery.of(removed, sender=None))
            emit(left_hooks(channel, left, _now_ms()))


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
