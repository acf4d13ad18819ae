"""What a session needs from its server: the state shared between connections, behind five calls.

    local        providers/local/hubport.py       the in-process hub; the state lives in the socket
    apigateway   providers/apigateway/port.py     the DynamoDB tables, loaded and written per frame

A port stores and answers; it never decides and never tells other connections anything. The
session decides what is allowed, what the sender is told, and what the others are told (the
Outcome's broadcasts, which the driver delivers).

Channels whose names start with `#` are the protocol's own: `#server-to-user-<id>` (pusher-js
joins it after pusher:signin) and `#watchers-<id>` (the connections whose watchlist holds <id>).
Clients cannot name them in a subscription otherwise (core.validation refuses `#`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from msgspec import Struct

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.provider import Member, PresenceData
    from providers.pusherproto.cache import CacheEntry
    from providers.pusherproto.state import SessionState


class ConnectionGone(Exception):
    """The connection's state is gone (it closed meanwhile): only a new connection can go on."""


class Counter(StrEnum):
    """The per-connection counters a session keeps."""

    CLIENT_EVENTS = "client_events"
    INVALID_FRAMES = "invalid_frames"


class Joined(Struct, frozen=True):
    """A subscription recorded: for presence, the roster with the new member, and whether this
    was that user's first connection on the channel (then it is announced); `count`, the
    channel's subscriptions now, when the server knows it (pusher_internal:subscription_count)."""

    roster: list[Member] | None = None
    first: bool = False
    count: int | None = None


class Left(Struct, frozen=True):
    """A subscription dropped: the user id of a presence member whose last connection on the
    channel this was, and the channel's subscriptions now (None: not known)."""

    user_id: str | None = None
    count: int | None = None


class SessionPort(Protocol):
    """The connection's state and the channels' membership, as one server stores them."""

    async def load(self) -> SessionState | None:
        """The connection's state (None: the connection is unknown or gone)."""

    async def join(self, channel: str, member: PresenceData | None) -> Joined:
        """Subscribe the connection, as `member` on a presence channel; ConnectionGone if the
        connection went away meanwhile."""

    async def leave(self, channel: str) -> Left:
        """Unsubscribe (a channel the connection has joined)."""

    async def sign_in(self, user_id: str) -> bool:
        """Remember pusher:signin's user, and the user as online through this connection;
        True when it is the user's first connection online. ConnectionGone if the connection
        went away."""

    async def sign_out(self, user_id: str) -> bool:
        """The signed-in connection ended: True when it was the user's last one online."""

    async def online(self, user_ids: Sequence[str]) -> list[str]:
        """Which of these users have a signed-in connection now."""

    async def cached(self, channel: str) -> CacheEntry | None:
        """A cache channel's last published event, if one is kept (fresh or not)."""

    async def throttle(self, channel: str, *, now: float, span: float) -> bool:
        """Take the channel's turn to announce its subscription count: False when another
        announcement was made less than `span` seconds ago."""

    async def count(self, counter: Counter, *, now: float, span: float, limit: int) -> bool:
        """Count one more in the counter's window (as `Window.counted`); False when the count
        the server holds is already at the limit (another invocation took the place)."""
