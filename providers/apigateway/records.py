"""What the API Gateway tables hold, as records: a connection, and one of its subscriptions."""

from __future__ import annotations

from msgspec import Struct, field


class Connection(Struct, frozen=True):
    """One WebSocket connection, as $connect stored it."""

    connection_id: str
    socket_id: str
    expires_at: int
    user_id: str | None = None
    token_expires: int | None = None
    signed_in: str | None = None
    channels: frozenset[str] = field(default_factory=frozenset)


class Subscription(Struct, frozen=True):
    """One connection subscribed to one channel (user_id on presence channels)."""

    channel: str
    connection_id: str
    socket_id: str
    user_id: str | None = None
