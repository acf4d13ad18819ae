"""The Pusher session's port on the local server: the socket keeps its state, the hub the channels.

One task serves a socket, and the hub's calls return without suspending, so a frame is handled
whole before any other socket's: the state the session holds is the whole truth, and nothing needs
to be written back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.provider import PresenceData
    from providers.local.hub import Hub, Subscriber
    from providers.pusherproto.port import Counter, Joined
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

    async def leave(self, channel: str) -> str | None:
        """Unsubscribe the socket; the presence user whose last socket this was."""
        return self._hub.unsubscribe(self._socket, channel)

    async def sign_in(self, user_id: str) -> None:
        """Nothing to store: the session's state is the socket's own."""

    async def count(self, counter: Counter, *, now: float, span: float, limit: int) -> bool:
        """The session's window already decided; no other task shares it."""
        return True
