"""Joining and leaving channels, and what others are told: member_added once per user on its
first connection, member_removed after its last. Shared by $default (subscribe, unsubscribe),
$disconnect, and the cleanup of connections a post found gone."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from providers.apigateway.store import Conflict
from providers.pusherproto import frames

if TYPE_CHECKING:
    from core.provider import PresenceData
    from providers.apigateway.provider import ApiGatewayProvider
    from providers.apigateway.records import Connection

log = logging.getLogger(__name__)


async def join(
    provider: ApiGatewayProvider,
    connection: Connection,
    channel: str,
    presence: PresenceData | None,
) -> str | None:
    """Subscribe; return subscription_succeeded for the route response, or None when it was
    posted already (presence channels, see below).

    Raise Conflict if the connection disappeared meanwhile (it disconnected)."""
    store = provider.store
    await store.track_channel(connection.connection_id, channel)
    await store.subscribe(channel, connection, None if presence is None else presence.user_id)
    if presence is None:
        return frames.subscription_succeeded(channel)
    first = await store.join(channel, presence.user_id, dict(presence.user_info), connection)
    members = await store.members(channel)
    roster: dict[str, Any] = {
        "ids": [user_id for user_id, _ in members],
        "hash": dict(members),
        "count": len(members),
    }
    # The roster is posted before member_added goes out, not returned as the route response
    # (which leaves only when this handler returns): pusher-js ignores member events for a
    # channel it has no roster of yet, and posting member_added may find a vanished member
    # whose member_removed must come after the roster that still lists it.
    await provider.send(connection.connection_id, frames.subscription_succeeded(channel, roster))
    if first:
        added = frames.member_added(channel, presence.user_id, presence.user_info)
        await provider.broadcast(channel, added, exclude_connection=connection.connection_id)
    return None


async def leave(
    provider: ApiGatewayProvider, connection_id: str, channel: str, *, untrack: bool = True
) -> None:
    """Unsubscribe; announce member_removed if that was the user's last connection here."""
    store = provider.store
    subscription = await store.unsubscribe(channel, connection_id)
    if untrack:
        await store.untrack_channel(connection_id, channel)
    if subscription is None or subscription.user_id is None:
        return
    if await store.leave(channel, subscription.user_id, connection_id):
        removed = frames.member_removed(channel, subscription.user_id)
        await provider.broadcast(channel, removed, exclude_connection=connection_id)


async def drop(provider: ApiGatewayProvider, connection_id: str) -> bool:
    """Forget a connection and all it joined ($disconnect, or a post that found it gone).

    Idempotent: the first caller gets the row and cleans up; later ones find nothing."""
    connection = await provider.store.remove_connection(connection_id)
    if connection is None:
        return False
    for channel in sorted(connection.channels):
        try:
            await leave(provider, connection_id, channel, untrack=False)
        except Conflict:  # pragma: no cover - leave() handles its own conditional writes
            log.debug("connection cleanup raced on one channel")
    return True
