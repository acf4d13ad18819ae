"""What the API Gateway tables hold, as records: a connection, and one of its subscriptions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec import Struct, field

from providers.pusherproto.state import Window

if TYPE_CHECKING:
    from collections.abc import Mapping


class Connection(Struct, frozen=True):
    """One WebSocket connection: what $connect stored, and its Pusher session's state since."""

    connection_id: str
    socket_id: str
    expires_at: int
    user_id: str | None = None
    token_expires: int | None = None
    signed_in: str | None = None
    channels: frozenset[str] = field(default_factory=frozenset)
    members: Mapping[str, str] = field(default_factory=dict)  # presence channel -> user id
    client_events: Window = field(default_factory=Window)
    invalid_frames: Window = field(default_factory=Window)


class Subscription(Struct, frozen=True):
    """One connection subscribed to one channel (user_id on presence channels)."""

    channel: str
    connection_id: str
    socket_id: str
    user_id: str | None = None
