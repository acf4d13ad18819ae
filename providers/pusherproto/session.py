"""One Pusher Channels protocol 7 session, sans I/O: a client's frames in, an Outcome out.

Both of the relay's Pusher-protocol servers drive this one session (STYLE.md 14): the local socket
server (providers/local/websocket.py) for the life of a socket, and the API Gateway `$default`
handler (providers/apigateway/protocol.py) for one frame, with the state rebuilt from DynamoDB.
The session opens no socket, reads no table and starts no task. What it needs to know about other
connections it awaits from its port (port.py: a roster, a first or last member, a counter), and
what should happen it returns as an `Outcome` (replies to the sender, broadcasts to the others, a
close), which the driver carries out in that order. Effects are returned rather than performed
through the port so that their order is decided here once (API Gateway needs the joiner's roster
out before member_added) and each driver delivers as it does best (a route response, a queue).

The rules, the same on both servers (tests/unit/providers/pusherproto/test_session.py):
* `pusher:ping` is answered without the connection's state (API Gateway reads no table for it);
  `pusher:pong` and events Pusher does not define are ignored.
* `pusher:subscribe` as subscribing.py decides (public channels by the authorizing service,
  core/authorizing.py); the presence roster in the answer, and member_added to the others on a
  user's first connection. On a cache channel (cache.py) the last published event follows the
  answer, or `pusher:cache_miss`.
* `pusher:unsubscribe` of a channel joined; member_removed after a user's last connection.
* A non-presence channel's subscribers hear `pusher_internal:subscription_count` when the count
  changes (every change up to 100 subscribers, then at most one every 5 s, as Pusher throttles
  it), where the server knows the count and the config asks for it.
* `pusher:signin` checks the user_data's signature (4009 otherwise); the user is then the
  connection's, for the policy and for `#server-to-user-`. Its `watchlist` (at most 100 ids)
  subscribes the connection to `#watchers-<id>` of each: it is told at once which of them are
  online, then `online` when one's first connection signs in and `offline` after its last ends
  (pusher_internal:watchlist_events).
* client events as client_events.py checks them, then at most `client_events_per_second` per
  connection (4301); they go to the channel's other subscribers, never back to the sender.
* More than `max_invalid_frames` frames a minute that are no protocol 7 frame close the
  connection (4010); each before that gets a `pusher:error`.
* A connection whose state is gone (API Gateway: the row expired or was cleaned up) is told to
  reconnect (4200) and closed.
* The outbound webhooks' events are the Outcome's hooks, decided beside the broadcasts: a
  channel's first subscription (channel_occupied) and last (channel_vacated) as the port counts
  them, a presence user's first and last connection (member_added, member_removed), every client
  event (client_event, with the sender's user_id on presence), a subscription to an empty cache
  channel (cache_miss) and each subscription count announced (subscription_count).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from core.authorizing import MAX_WATCHLIST
from core.provider import ChannelEvent
from core.validation import CLIENT_EVENT_PREFIX, ChannelKind, channel_kind
from providers.pusherproto import client_events, frames, signing, subscribing
from providers.pusherproto.cache import is_cache_channel
from providers.pusherproto.config import COUNT_EVERY_CHANGE_UP_TO, COUNT_THROTTLE_SECONDS
from providers.pusherproto.frames import ErrorCode
from providers.pusherproto.outcome import (
    WATCHERS_PREFIX,
    WATCHLIST_EVENTS,
    Broadcast,
    Outcome,
    joined_hooks,
    left_hooks,
    member_added,
    member_removed,
    subscription_count,
    watchlist_data,
    watchlist_event,
)
from providers.pusherproto.port import ConnectionGone, Counter

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from providers.pusherproto.config import SessionConfig
    from providers.pusherproto.port import SessionPort
    from providers.pusherproto.state import SessionState

    Step = Callable[[SessionState, Outcome], Awaitable[None]]

INVALID_FRAME_WINDOW_SECONDS = 60.0


class Session:
    """One connection's protocol conversation; `state` is read from the port when first needed."""

    def __init__(
        self,
        config: SessionConfig,
        port: SessionPort,
        state: SessionState | None = None,
        *,
        client_ip: str | None = None,
    ) -> None:
        self.config = config
        self.port = port
        self.state = state
        self.client_ip = client_ip  # the rate limit's key for anonymous connections

    async def receive(self, text: str) -> Outcome:
        """The outcome of one text frame from the client."""
        try:
            frame = frames.parse(text)
        except ValueError:
            return await self.invalid("Invalid JSON: a frame must be an object with an event")
        name: str = frame["event"]
        data = frame.get("data")
        args: dict[str, Any] = data if isinstance(data, dict) else {}
        if name == "pusher:ping":
            return Outcome([frames.pong()])
        if name == "pusher:subscribe":
            return await self._run(lambda state, out: self._subscribe(state, out, args))
        if name == "pusher:unsubscribe":
            return await self._run(lambda state, out: self._unsubscribe(state, out, args))
        if name == "pusher:signin":
            return await self._run(lambda state, out: self._signin(state, out, args))
        if name.startswith(CLIENT_EVENT_PREFIX):
            channel = frame.get("channel")
            return await self._run(
                lambda state, out: self._client_event(state, out, name, channel, data)
            )
        return Outcome()  # pusher:pong, and events Pusher ignores

    async def invalid(self, message: str) -> Outcome:
        """A frame that is no protocol 7 frame (not UTF-8, not JSON, too large for the server):
        an error, or past `max_invalid_frames` a minute, the close (4010)."""
        state = await self._load()
        if state is None:
            return _gone()
        limit = self.config.max_invalid_frames
        span = INVALID_FRAME_WINDOW_SECONDS
        if await self._count(state, Counter.INVALID_FRAMES, span=span, limit=limit):
            return Outcome([frames.error(message)])
        code = ErrorCode.TOO_MANY_INVALID_FRAMES
        text = f"Too many invalid frames: more than {limit} in {span:g} seconds"
        return Outcome([frames.error(text, code)], close=code)

    async def close(self) -> Outcome:
        """The connection ended: leave every channel, announcing members who left for good."""
        state = await self._load()
        if state is None:
            return Outcome()
        counts = self.config.subscription_counts
        return await leave_all(self.port, state, counts=counts, clock=self.config.clock)

    # -- internals --------------------------------------------------------------------------
    async def _load(self) -> SessionState | None:
        if self.state is None:
            self.state = await self.port.load()
        return self.state

    async def _run(self, step: Step) -> Outcome:
        state = await self._load()
        if state is None:
            return _gone()
        out = Outcome()
        try:
            await step(state, out)
        except ConnectionGone:
            return _gone()
        return out

    async def _count(
        self, state: SessionState, counter: Counter, *, span: float, limit: int
    ) -> bool:
        # The state's window decides first (no write when it is full); the port's count is the
        # authority where concurrent invocations share the counter (API Gateway).
        now = self.config.clock()
        before = state.client_events if counter is Counter.CLIENT_EVENTS else state.invalid_frames
        after = before.counted(now, span=span, limit=limit)
        if after is None or not await self.port.count(counter, now=now, span=span, limit=limit):
            return False
        if counter is Counter.CLIENT_EVENTS:
            state.client_events = after
        else:
            state.invalid_frames = after
        return True

    async def _subscribe(self, state: SessionState, out: Outcome, data: dict[str, Any]) -> None:
        try:
            admitted = subscribing.admit(self.config, state, data)
            if admitted is not None and admitted.public:
                await subscribing.authorize(
                    self.config, state, admitted.channel, client_ip=self.client_ip
                )
        except subscribing.Refused as refused:
            raw = data.get("channel")
            out.replies.append(refused.frame(raw if isinstance(raw, str) else ""))
            return
        if admitted is None:
            return  # joined already: pusher-js never resubscribes, and nothing changes
        channel, member = admitted.channel, admitted.member
        joined = await self.port.join(channel, member)
        state.channels.add(channel)
        if member is not None:
            state.members[channel] = member.user_id
        roster = None if joined.roster is None else frames.roster(joined.roster)
        out.replies.append(frames.subscription_succeeded(channel, roster))
        now_ms = _millis(self.config.clock)
        out.hooks.extend(joined_hooks(channel, member, joined, now_ms))
        if member is not None and joined.first:
            out.broadcasts.append(member_added(channel, member))
        if self.config.subscription_counts:
            counted = await _count(self.port, channel, joined.count, self.config.clock)
            out.broadcasts.extend(counted)
            out.hooks.extend(_count_hooks(counted, joined.count, now_ms))
        if is_cache_channel(channel):
            cached = await self.port.cached(channel)
            if cached is not None and cached.fresh(self.config.clock()):
                out.replies.append(frames.event(cached.event, channel, cached.data))
            else:
                out.replies.append(frames.cache_miss(channel))
                out.hooks.append(ChannelEvent("cache_miss", channel, now_ms))

    async def _unsubscribe(self, state: SessionState, out: Outcome, data: dict[str, Any]) -> None:
        channel = data.get("channel")
        if isinstance(channel, str) and channel in state.channels:
            counts = self.config.subscription_counts
            await _leave(self.port, state, channel, out, counts=counts, clock=self.config.clock)

    async def _signin(self, state: SessionState, out: Outcome, data: dict[str, Any]) -> None:
        user_data = data.get("user_data")
        config = self.config
        if not isinstance(user_data, str) or not signing.verify_user_auth(
            config.app_key,
            config.app_secret,
            data.get("auth"),
            socket_id=state.socket_id,
            user_data=user_data,
        ):
            out.replies.append(frames.error("Invalid signin signature", ErrorCode.UNAUTHORIZED))
            return
        if state.signed_in is not None:
            out.replies.append(frames.error("This connection is signed in already"))
            return
        try:
            user_id, watchlist = _user(user_data)
        except ValueError as exc:
            out.replies.append(frames.error(str(exc), ErrorCode.UNAUTHORIZED))
            return
        first = await self.port.sign_in(user_id)
        state.signed_in = user_id
        out.replies.append(frames.signin_success(user_data))
        for watched in watchlist:
            channel = WATCHERS_PREFIX + watched
            if channel not in state.channels:
                await self.port.join(channel, None)
                state.channels.add(channel)
        online = await self.port.online(watchlist) if watchlist else []
        if online:
            known = watchlist_data("online", online)
            out.replies.append(frames.connection_event(WATCHLIST_EVENTS, known))
        if first:
            out.broadcasts.append(watchlist_event(user_id, "online"))

    async def _client_event(
        self, state: SessionState, out: Outcome, name: str, channel: object, data: object
    ) -> None:
        try:
            event = client_events.check(self.config, state, name, channel, data)
        except client_events.Rejected as rejected:
            out.replies.append(frames.error(str(rejected)))
            return
        limit = self.config.client_events_per_second
        if not await self._count(state, Counter.CLIENT_EVENTS, span=1.0, limit=limit):
            code = ErrorCode.CLIENT_EVENT_RATE_LIMIT
            out.replies.append(frames.error("Client event rejected: rate limit", code))
            return
        out.broadcasts.append(event)
        out.hooks.append(
            ChannelEvent(
                "client_event",
                event.channel,
                _millis(self.config.clock),
                user_id=event.user_id,
                event=event.event,
                data=event.data,
                socket_id=state.socket_id,
            )
        )


async def leave_all(
    port: SessionPort,
    state: SessionState,
    *,
    counts: bool = True,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """Leave every channel of a connection that ended, member_removed where it was a user's last
    connection, the new subscription counts where `counts`, and `offline` to the watchers of a
    signed-in user whose last connection this was (the local socket's end; API Gateway's
    $disconnect and its cleanup of connections found gone); the hooks of each leave."""
    out = Outcome()
    for channel in sorted(state.channels):
        await _leave(port, state, channel, out, counts=counts, clock=clock)
    if state.signed_in is not None and await port.sign_out(state.signed_in):
        out.broadcasts.append(watchlist_event(state.signed_in, "offline"))
    return out


async def _leave(
    port: SessionPort,
    state: SessionState,
    channel: str,
    out: Outcome,
    *,
    counts: bool,
    clock: Callable[[], float],
) -> None:
    left = await port.leave(channel)
    state.channels.discard(channel)
    state.members.pop(channel, None)
    if left.user_id is not None:
        out.broadcasts.append(member_removed(channel, left.user_id))
    now_ms = _millis(clock)
    out.hooks.extend(left_hooks(channel, left, now_ms))
    if counts:
        counted = await _count(port, channel, left.count, clock)
        out.broadcasts.extend(counted)
        out.hooks.extend(_count_hooks(counted, left.count, now_ms))


def _count_hooks(counted: list[Broadcast], count: int | None, time_ms: int) -> list[ChannelEvent]:
    # The count announced travels as `data`: ChannelEvent has no field of its own for it.
    return [
        ChannelEvent("subscription_count", b.channel, time_ms, data=str(count)) for b in counted
    ]


def _millis(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


async def _count(
    port: SessionPort, channel: str, count: int | None, clock: Callable[[], float]
) -> list[Broadcast]:
    """The subscription count to announce after a change, if any: none for presence channels
    (their members are announced instead) nor the protocol's own `#` channels; above 100
    subscribers, only when the channel's last announcement is 5 s old."""
    if count is None or channel.startswith("#") or channel_kind(channel) is ChannelKind.PRESENCE:
        return []
    if count > COUNT_EVERY_CHANGE_UP_TO and not await port.throttle(
        channel, now=clock(), span=COUNT_THROTTLE_SECONDS
    ):
        return []
    return [subscription_count(channel, count)]


def _user(user_data: str) -> tuple[str, list[str]]:
    """The signed user_data's id and watchlist; ValueError saying what is wrong."""
    try:
        parsed = orjson.loads(user_data)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError("user_data must be a JSON object")
    user_id = _id(parsed.get("id"))
    if user_id is None:
        raise ValueError("user_data must hold an id (a string or an integer)")
    raw = parsed.get("watchlist", [])
    if not isinstance(raw, list):
        raise ValueError("user_data's watchlist must be a list of user ids")
    watchlist = list(dict.fromkeys(_id(item) for item in raw))
    if None in watchlist:
        raise ValueError("user_data's watchlist must be a list of user ids")
    if len(watchlist) > MAX_WATCHLIST:
        raise ValueError(f"a watchlist holds at most {MAX_WATCHLIST} user ids")
    return user_id, [w for w in watchlist if w is not None]


def _id(value: object) -> str | None:
    # Pusher's ids are strings; Laravel's are integers, sent as numbers: both name a user.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


def _gone() -> Outcome:
    # The API Gateway row expired or a cleanup removed it: only a new connection can recover.
    code = ErrorCode.GENERIC_RECONNECT
    return Outcome([frames.error("Unknown connection: reconnect", code)], close=code)
