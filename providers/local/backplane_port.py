"""The Pusher session's port on a process of a Redis backplane: the hub keeps this process's truth
(its sockets, what they joined as), Redis the cluster's (backplane_redis.py, shared.py).

Every call records in the hub first, then in Redis, and answers with Redis's figures: the roster
of every host, a user's first connection anywhere, the cluster's subscription count. While Redis
is unreachable the hub's own answer stands (this process's roster, its users, its counts); when
Redis returns, the backplane registers again what the hub holds and announces the difference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

from core.errors import ProviderUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from core.provider import PresenceData
    from providers.local.hub import Hub, Subscriber
    from providers.local.shared import SharedState
    from providers.pusherproto.cache import CacheEntry
    from providers.pusherproto.port import Counter, Joined, Left
    from providers.pusherproto.state import SessionState

T = TypeVar("T")


class Link(Protocol):
    """What the port needs of its backplane (backplane_redis.RedisBackplane)."""

    hub: Hub
    shared: SharedState
    up: bool  # False while Redis is unreachable

    async def listen(self, channel: str) -> None:
        """Listen to the channel on Redis, if this process has just got its first subscriber."""

    def unlisten(self, channel: str) -> None:
        """Stop listening, if this process has no subscriber left on the channel."""

    def lost(self, exc: BaseException | None = None) -> None:
        """Redis failed a call."""


class BackplanePort:
    """SessionPort over the hub and the cluster's shared state, for one socket."""

    def __init__(self, backplane: Link, socket: Subscriber, state: SessionState) -> None:
        self._backplane = backplane
        self._hub = backplane.hub
        self._shared = backplane.shared
        self._socket = socket
        self._state = state

    async def load(self) -> SessionState:
        """The socket's own state."""
        return self._state

    async def join(self, channel: str, member: PresenceData | None) -> Joined:
        """Subscribe here (listening to the channel on Redis first), then in the cluster."""
        local = self._hub.subscribe(self._socket, channel, member)
        await self._backplane.listen(channel)
        socket_id = self._socket.socket_id
        return await self._or(lambda: self._shared.join(channel, socket_id, member), local)

    async def leave(self, channel: str) -> Left:
        """Unsubscribe here and in the cluster."""
        local = self._hub.unsubscribe(self._socket, channel)
        self._backplane.unlisten(channel)
        return await self._or(lambda: self._shared.leave(channel, self._socket.socket_id), local)

    async def sign_in(self, user_id: str) -> bool:
        """The user is online through this socket; True for its first connection anywhere."""
        local = self._hub.sign_in(user_id, self._socket.socket_id)
        return await self._or(lambda: self._shared.sign_in(user_id, self._socket.socket_id), local)

    async def sign_out(self, user_id: str) -> bool:
        """The socket ended; True when it was the user's last connection anywhere."""
        local = self._hub.sign_out(user_id, self._socket.socket_id)
        return await self._or(lambda: self._shared.sign_out(self._socket.socket_id), local)

    async def online(self, user_ids: Sequence[str]) -> list[str]:
        """The watched users signed in on any process."""
        return await self._or(lambda: self._shared.online(user_ids), self._hub.online(user_ids))

    async def cached(self, channel: str) -> CacheEntry | None:
        """The cache channel's last event, as the cluster kept it."""
        return await self._or(lambda: self._shared.cached(channel), self._hub.cached(channel))

    async def throttle(self, channel: str, *, now: float, span: float) -> bool:
        """One announcement per `span` across the cluster."""
        local = self._hub.throttle(channel, now=now, span=span)
        return await self._or(lambda: self._shared.throttle(channel, span=span), local)

    async def count(self, counter: Counter, *, now: float, span: float, limit: int) -> bool:
        """The session's window already decided: a socket's counters are its own."""
        return True

    async def _or(self, shared: Callable[[], Awaitable[T]], local: T) -> T:
        """Redis's answer, or the hub's while Redis is unreachable."""
        if not self._backplane.up:
            return local
        try:
            return await shared()
        except ProviderUnavailable:
            self._backplane.lost()
            return local
