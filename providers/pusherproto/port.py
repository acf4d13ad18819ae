"""What a session needs from its server: the state shared between connections, behind five calls.

    local        providers/local/hubport.py       the in-process hub; the state lives in the socket
    apigateway   providers/apigateway/port.py     the DynamoDB tables, loaded and written per frame

A port stores and answers; it never decides and never tells other connections anything. The
session decides what is allowed, what the sender is told, and what the others are told (the
Outcome's broadcasts, which the driver delivers).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from msgspec import Struct

if TYPE_CHECKING:
    from core.provider import Member, PresenceData
    from providers.pusherproto.state import SessionState


class ConnectionGone(Exception):
    """The connection's state is gone (it closed meanwhile): only a new connection can go on."""


class Counter(StrEnum):
    """The per-connection counters a session keeps."""

    CLIENT_EVENTS = "client_events"
    INVALID_FRAMES = "invalid_frames"


class Joined(Struct, frozen=True):
    """A subscription recorded: for presence, the roster with the new member, and whether this
    was that user's first connection on the channel (then it is announced)."""

    roster: list[Member] | None = None
    first: bool = False


class SessionPort(Protocol):
    """The connection's state and the channels' membership, as one server stores them."""

    async def load(self) -> SessionState | None:
        """The connection's state (None: the connection is unknown or gone)."""

    async def join(self, channel: str, member: PresenceData | None) -> Joined:
        """Subscribe the connection, as `member` on a presence channel; ConnectionGone if the
        connection went away meanwhile."""

    async def leave(self, channel: str) -> str | None:
        """Unsubscribe; the user id of a presence member whose last connection this was."""

    async def sign_in(self, user_id: str) -> None:
        """Remember pusher:signin's user; ConnectionGone if the connection went away."""

    async def count(self, counter: Counter, *, now: float, span: float, limit: int) -> bool:
        """Count one more in the counter's window (as `Window.counted`); False when the count
        the server holds is already at the limit (another invocation took the place)."""
