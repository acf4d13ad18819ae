"""The Pusher session's port on the local server: the socket keeps its state, the hub the channels.

One task serves a socket, and the hub's calls return without suspending, so a frame is handled
whole before any other socket's: the state the session holds is the whole truth, and nothing needs
to be written back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.provider import PresenceData
    from providers.local.hub import Hub, Subscriber
    from providers.pusherproto.cache import CacheEntry
    from providers.pusherproto.port import Counter, Joined, Left
    from providers.pusherproto.state import SessionState


class HubPort:
    """SessionPort over the in-process hub, for one socket."""

    def __init__(self, hub: Hub, socket: Subscriber, state: SessionState) -> None:
        self._hub = hub
        self._socket = socket
        self._state = state

    async def load(self) -> SessionState:
        """The socket's own state."""
        return self._state

    async def join(self, channel: str, member: PresenceData | None) -> Joined:
        """Subscribe the socket in the hub."""
        return self._hub.subscribe(self._socket, channel, member)

    async def leave(self, channel: str) -> Left:
        """Unsubscribe the socket."""
        return self._hub.unsubscribe(self._socket, channel)

    async def sign_in(self, user_id: str) -> bool:
        """The user is online through this socket (the state is the socket's own)."""
        return self._hub.sign_in(user_id, self._socket.socket_id)

    async def sign_out(self, user_id: str) -> bool:
        """The socket ended."""
        return self._hub.sign_out(user_id, self._socket.socket_id)

    async def online(self, user_ids: Sequence[str]) -> list[str]:
        """The watched users signed in here."""
        return self._hub.online(user_ids)

    async def cached(self, channel: str) -> CacheEntry | None:
        """The cache channel's last event."""
        return self._hub.cached(channel)

    async def throttle(self, channel: str, *, now: float, span: float) -> bool:
        """The hub's record of the channel's last announcement."""
        return self._hub.throttle(channel, now=now, span=span)

    async def count(self, counter: Counter, *, now: float, span: float, limit: int) -> bool:
        """The session's window already decided; no other task shares it."""
        return True
