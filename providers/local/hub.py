"""In-process channel state: who is subscribed where, presence rosters, and a short replay log.

The hub records and answers (a roster, whether a user's first socket joined or its last left);
what others are told about it is the Pusher session's decision (providers/pusherproto/session.py),
delivered through `deliver`. A broadcast is encoded once per wire format (Pusher frame, SSE frame)
however many subscribers receive it; subscribers take frames without blocking and write them from
their own tasks.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from msgspec import Struct, field

from core.provider import Member, PresenceData
from providers.pusherproto import frames
from providers.pusherproto.cache import CACHE_SECONDS, CacheEntry, is_cache_channel
from providers.pusherproto.port import Joined, Left

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from providers.pusherproto.outcome import Broadcast

log = logging.getLogger(__name__)


class Delivery:
    """One event for one channel, with its encodings computed at most once."""

    __slots__ = (
        "_pusher",
        "_sse",
        "_sse_history",
        "channel",
        "channelless",
        "data",
        "event",
        "exclude",
        "history_id",
        "json",
        "seq",
        "user_id",
    )

    def __init__(
        self,
        event: str,
        channel: str,
        data: str,
        *,
        exclude: str | None = None,
        user_id: str | None = None,
        json: bool = False,
        channelless: str | None = None,
        history_id: str | None = None,
    ) -> None:
        """`channelless`: the frame, when it names no channel (a watchlist event);
        `history_id`: the message's id in the channel history the relay keeps (core.history)."""
        self.event = event
        self.channel = channel
        self.data = data
        self.json = json  # data is JSON the relay encoded from a published non-string value
        self.exclude = exclude
        self.user_id = user_id
        self.seq = 0
        self.history_id = history_id
        self.channelless = channelless is not None
        self._pusher: str | None = channelless
        self._sse: bytes | None = None
        self._sse_history: bytes | None = None

    @classmethod
    def of(cls, broadcast: Broadcast, *, sender: str | None) -> Delivery:
        """A session's broadcast, sent by the socket `sender` (excluded when it asks so)."""
        exclude = sender if broadcast.exclude_sender else None
        return cls(
            broadcast.event,
            broadcast.channel,
            broadcast.data,
            exclude=exclude,
            user_id=broadcast.user_id,
            json=broadcast.json,
            channelless=broadcast.frame() if broadcast.channelless else None,
        )

    @property
    def internal(self) -> bool:
        """Protocol bookkeeping (presence changes) rather than an application event."""
        return self.event.startswith("pusher_internal:")

    @property
    def published(self) -> bool:
        """An event the backend published (neither bookkeeping nor a client's client event)."""
        return not self.internal and not self.event.startswith("client-")

    def pusher_frame(self) -> str:
        """The protocol 7 frame."""
        if self._pusher is None:
            self._pusher = frames.event(self.event, self.channel, self.data, user_id=self.user_id)
        return self._pusher

    def sse_frame(self, epoch: str) -> bytes:
        """The server-sent-events frame: id, then one JSON data line whose `data` is the value as
        published: JSON the relay encoded goes in as JSON (no second decode for the client), a
        published string as a string."""
        if self._sse is None:
            self._sse = b"id: %s-%d\n%s" % (epoch.encode(), self.seq, self._sse_data())
        return self._sse

    def sse_history_frame(self) -> bytes:
        """The frame for a stream that resumes from the channel's history: the history id as
        its id (for a delivery that has one)."""
        if self._sse_history is None:
            history_id = (self.history_id or "").encode()
            self._sse_history = b"id: %s\n%s" % (history_id, self._sse_data())
        return self._sse_history

    def _sse_data(self) -> bytes:
        body: dict[str, Any] = {"type": "event", "channel": self.channel, "event": self.event}
        body["data"] = orjson.Fragment(self.data) if self.json else self.data
        return b"data: %s\n\n" % orjson.dumps(body)


class Subscriber(Protocol):
    """A connection the hub can hand deliveries to."""

    socket_id: str
    channels: set[str]

    def deliver(self, delivery: Delivery) -> None:
        """Queue the delivery without blocking."""


class Socket(Subscriber, Protocol):
    """A WebSocket client, as the provider closes it (drain, terminate a user)."""

    @property
    def signed_in(self) -> str | None:
        """The user pusher:signin proved, if any."""

    def close(self, code: int) -> None:
        """Close with a Pusher close code, after what is queued."""


class Stream(Subscriber, Protocol):
    """An SSE client, as the provider ends it (drain)."""

    def end(self) -> None:
        """End the stream after what is queued."""


class _Presence(Struct):
    user_info: Mapping[str, Any]
    sockets: set[str] = field(default_factory=set)


class Hub:
    """Subscriptions, presence, signed-in users, cache channels and replay for one process."""

    def __init__(
        self,
        *,
        replay_messages: int = 100,
        replay_channels: int = 10_000,
        cache_channels: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._subscribers: dict[str, dict[str, Subscriber]] = {}
        self._presence: dict[str, dict[str, _Presence]] = {}
        self._member_of: dict[tuple[str, str], str] = {}  # (channel, socket_id) -> user_id
        self._replay: OrderedDict[str, deque[Delivery]] = OrderedDict()
        self._replay_messages = replay_messages
        self._replay_channels = replay_channels
        # A cache channel's last published event, the least recently written dropped first
        # past `cache_channels`; each is sent for CACHE_SECONDS after it was published.
        self._cache: OrderedDict[str, CacheEntry] = OrderedDict()
        self._cache_channels = cache_channels
        self._signed_in: dict[str, set[str]] = {}  # user id -> its signed-in socket ids
        self._announced: dict[str, float] = {}  # channel -> last subscription count announced
        self._clock = clock
        self._seq = 0
        # Event ids are `epoch-seq`: a restarted process never resumes from another's ids.
        self.epoch = secrets.token_hex(4)

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest delivery of this process."""
        return self._seq

    def event_id(self, delivery: Delivery) -> str:
        """The id under which SSE and history show a delivery."""
        return f"{self.epoch}-{delivery.seq}"

    def subscribe(
        self, sub: Subscriber, channel: str, presence: PresenceData | None = None
    ) -> Joined:
        """Add a subscription; for presence, the roster and whether the user is new here."""
        subs = self._subscribers.setdefault(channel, {})
        subs[sub.socket_id] = sub
        sub.channels.add(channel)
        if presence is None:
            return Joined(count=len(subs))
        roster = self._presence.setdefault(channel, {})
        entry = roster.get(presence.user_id)
        first = entry is None
        if entry is None:
            entry = roster[presence.user_id] = _Presence(presence.user_info)
        entry.sockets.add(sub.socket_id)
        self._member_of[(channel, sub.socket_id)] = presence.user_id
        members = [Member(uid, e.user_info) for uid, e in roster.items()]
        return Joined(members, first, count=len(subs))

    def unsubscribe(self, sub: Subscriber, channel: str) -> Left:
        """Drop one subscription: the presence user id if its last socket left, and the count."""
        sub.channels.discard(channel)
        subs = self._subscribers.get(channel)
        if subs is not None:
            subs.pop(sub.socket_id, None)
            if not subs:
                del self._subscribers[channel]
                self._announced.pop(channel, None)
        count = len(subs) if subs else 0
        user_id = self._member_of.pop((channel, sub.socket_id), None)
        if user_id is None:
            return Left(count=count)
        roster = self._presence[channel]
        entry = roster[user_id]
        entry.sockets.discard(sub.socket_id)
        if entry.sockets:
            return Left(count=count)
        del roster[user_id]
        if not roster:
            del self._presence[channel]
        return Left(user_id, count)

    def remove(self, sub: Subscriber) -> list[tuple[str, str]]:
        """Drop every subscription of a closing connection; (channel, user id) of each presence
        user whose last socket this was."""
        left = [(channel, self.unsubscribe(sub, channel)) for channel in sorted(sub.channels)]
        return [(channel, gone.user_id) for channel, gone in left if gone.user_id is not None]

    # -- signed-in users (watchlists) -------------------------------------------------------
    def sign_in(self, user_id: str, socket_id: str) -> bool:
        """A socket signed in as the user; True when it is the user's first one here."""
        sockets = self._signed_in.setdefault(user_id, set())
        sockets.add(socket_id)
        return len(sockets) == 1

    def sign_out(self, user_id: str, socket_id: str) -> bool:
        """A signed-in socket ended; True when it was the user's last one here."""
        sockets = self._signed_in.get(user_id)
        if sockets is None or socket_id not in sockets:
            return False
        sockets.discard(socket_id)
        if sockets:
            return False
        del self._signed_in[user_id]
        return True

    def online(self, user_ids: Sequence[str]) -> list[str]:
        """Which of these users have a signed-in socket here."""
        return [u for u in user_ids if u in self._signed_in]

    # -- cache channels and the subscription count's throttle -------------------------------
    def cached(self, channel: str) -> CacheEntry | None:
        """A cache channel's last published event, if kept."""
        return self._cache.get(channel)

    def throttle(self, channel: str, *, now: float, span: float) -> bool:
        """The channel's turn to announce its subscription count, if `span` has passed."""
        if now - self._announced.get(channel, float("-inf")) < span:
            return False
        self._announced[channel] = now
        return True

    def deliver(self, delivery: Delivery) -> int:
        """Hand the delivery to every local subscriber but the excluded one; return how many."""
        self._seq += 1
        delivery.seq = self._seq
        if not delivery.internal and self._replay_messages:
            self._remember(delivery)
        if delivery.published and is_cache_channel(delivery.channel):
            self._keep(delivery)
        count = 0
        for socket_id, sub in list(self._subscribers.get(delivery.channel, {}).items()):
            if socket_id != delivery.exclude:
                sub.deliver(delivery)
                count += 1
        return count

    def _remember(self, delivery: Delivery) -> None:
        log_ = self._replay.get(delivery.channel)
        if log_ is None:
            log_ = self._replay[delivery.channel] = deque(maxlen=self._replay_messages)
            if len(self._replay) > self._replay_channels:
                self._replay.popitem(last=False)
        else:
            self._replay.move_to_end(delivery.channel)
        log_.append(delivery)

    def _keep(self, delivery: Delivery) -> None:
        cache = self._cache
        cache.pop(delivery.channel, None)
        expires = self._clock() + CACHE_SECONDS
        cache[delivery.channel] = CacheEntry(delivery.event, delivery.data, expires)
        if len(cache) > self._cache_channels:
            cache.popitem(last=False)

    def replay(self, channel: str, after_seq: int) -> list[Delivery]:
        """Remembered deliveries on a channel newer than `after_seq`, oldest first."""
        return [d for d in self._replay.get(channel, ()) if d.seq > after_seq]

    def members(self, channel: str) -> list[Member]:
        """The users present on a channel in this process."""
        return [Member(uid, e.user_info) for uid, e in self._presence.get(channel, {}).items()]

    def channel_names(self, prefix: str = "") -> list[str]:
        """The channels with a subscriber in this process whose names start with `prefix`."""
        return sorted(c for c in self._subscribers if c.startswith(prefix))

    def entries(self) -> list[tuple[Subscriber, str, PresenceData | None]]:
        """Every subscription of this process: the subscriber, the channel, and the member it
        joined as on a presence channel (what a backplane registers again after an outage)."""
        found: list[tuple[Subscriber, str, PresenceData | None]] = []
        for channel, subs in self._subscribers.items():
            roster = self._presence.get(channel, {})
            for socket_id, sub in subs.items():
                user_id = self._member_of.get((channel, socket_id))
                member = None
                if user_id is not None:
                    member = PresenceData(user_id, roster[user_id].user_info)
                found.append((sub, channel, member))
        return found

    def sign_ins(self) -> list[tuple[str, str]]:
        """(socket id, user id) of every signed-in socket of this process."""
        return [(s, user) for user, sockets in self._signed_in.items() for s in sockets]

    def subscriber_count(self, channel: str) -> int:
        """How many connections are subscribed to a channel in this process."""
        return len(self._subscribers.get(channel, {}))
