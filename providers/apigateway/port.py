"""The Pusher session's port on API Gateway: the connection's state in DynamoDB, frame by frame.

API Gateway invokes `$default` once per frame, on whichever Lambda instance is free, so nothing
survives between two frames but the tables. The port reads the session's state from the
connection's row when the session first needs it (pusher:ping needs none), and writes each change
the session makes as one conditional update (store.py): a set gains or loses one element, a
counter is incremented, so that two frames of one connection handled at once never undo each
other's writes.

`drop` ends a connection as the local server ends a socket: every channel left, presence members
who left with it announced. $disconnect runs it, and so does the provider when a post finds a
connection gone; the row's delete, which returns what it held, makes the first caller the only one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from core.provider import Member
from core.webhooks.sink import emit, settle
from providers.apigateway.store import ONLINE, Conflict
from providers.pusherproto.port import ConnectionGone, Joined, Left
from providers.pusherproto.session import leave_all
from providers.pusherproto.state import SessionState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.provider import PresenceData
    from providers.apigateway.records import Connection
    from providers.apigateway.store import Store
    from providers.pusherproto.cache import CacheEntry
    from providers.pusherproto.port import Counter


class Poster(Protocol):
    """What delivers a dropped connection's broadcasts: the provider's fan-out."""

    async def broadcast(
        self, channel: str, frame: str, *, exclude_connection: str | None = None
    ) -> object:
        """Post a frame to the channel's subscribers."""


class DynamoPort:
    """SessionPort over the tables, for one connection."""

    def __init__(
        self,
        store: Store,
        connection_id: str,
        *,
        connection: Connection | None = None,
        removed: bool = False,
    ) -> None:
        self._store = store
        self._id = connection_id
        self._connection = connection  # the row as read (None: not read yet)
        self._removed = removed  # the row is deleted already: nothing to untrack on it

    async def load(self) -> SessionState | None:
        """The session's state from the connection's row; None when the row is gone."""
        if self._connection is None:
            self._connection = await self._store.connection(self._id)
        return None if self._connection is None else state_of(self._connection)

    async def join(self, channel: str, member: PresenceData | None) -> Joined:
        """Track the channel on the row (first: it fails once the connection is gone), write
        the subscription, and for presence the member and the roster."""
        connection = self._loaded()
        user_id = None if member is None else member.user_id
        try:
            await self._store.track_channel(self._id, channel, user_id)
        except Conflict as exc:
            raise ConnectionGone(self._id) from exc
        count = await self._store.subscribe(channel, connection, user_id)
        if member is None:
            return Joined(count=count)
        first = await self._store.join(channel, member.user_id, dict(member.user_info), connection)
        members = await self._store.members(channel)
        return Joined([Member(user, info) for user, info in members], first, count=count)

    async def leave(self, channel: str) -> Left:
        """Delete the subscription and untrack it: the user id if that was the presence
        member's last connection on the channel, and the channel's count."""
        subscription = await self._store.unsubscribe(channel, self._id)
        count = None if subscription is None else await self._store.uncount(channel)
        member = None if self._connection is None else self._connection.members.get(channel)
        if not self._removed:
            await self._store.untrack_channel(self._id, channel, member)
        user_id = member if subscription is None else subscription.user_id
        if user_id is not None and await self._store.leave(channel, user_id, self._id):
            return Left(user_id, count)
        return Left(count=count)

    async def sign_in(self, user_id: str) -> bool:
        """Record pusher:signin's user on the row, and the connection among the user's online
        ones (the presence table's `#online`)."""
        try:
            await self._store.sign_in(self._id, user_id)
        except Conflict as exc:
            raise ConnectionGone(self._id) from exc
        return await self._store.join(ONLINE, user_id, {}, self._loaded())

    async def sign_out(self, user_id: str) -> bool:
        """The connection ended: True if it was the user's last one online."""
        return await self._store.leave(ONLINE, user_id, self._id)

    async def online(self, user_ids: Sequence[str]) -> list[str]:
        """The watched users online now."""
        return await self._store.online(user_ids)

    async def cached(self, channel: str) -> CacheEntry | None:
        """The cache channel's kept event."""
        return await self._store.cached(channel)

    async def throttle(self, channel: str, *, now: float, span: float) -> bool:
        """The count row's conditional write decides."""
        return await self._store.throttle(channel, now=now, span=span)

    async def count(self, counter: Counter, *, now: float, span: float, limit: int) -> bool:
        """The row's counter, counted by a conditional write."""
        return await self._store.count_in_window(self._id, counter, now=now, span=span, limit=limit)

    def _loaded(self) -> Connection:
        if self._connection is None:  # pragma: no cover - the session loads before it joins
            raise ConnectionGone(self._id)
        return self._connection


def state_of(connection: Connection) -> SessionState:
    """The session state a connection's row holds."""
    return SessionState(
        socket_id=connection.socket_id,
        user_id=connection.user_id,
        user_expires=connection.token_expires,
        signed_in=connection.signed_in,
        channels=set(connection.channels),
        members=dict(connection.members),
        client_events=connection.client_events,
        invalid_frames=connection.invalid_frames,
    )


async def drop(store: Store, poster: Poster, connection_id: str, *, counts: bool = False) -> bool:
    """Forget a connection and all it joined ($disconnect, or a post that found it gone),
    announcing what leave_all decides (`counts`: the subscription counts too); False when
    another caller got there first."""
    connection = await store.remove_connection(connection_id)
    if connection is None:
        return False
    port = DynamoPort(store, connection_id, connection=connection, removed=True)
    left = await leave_all(port, state_of(connection), counts=counts)
    for broadcast in left.broadcasts:
        await poster.broadcast(
            broadcast.channel, broadcast.frame(), exclude_connection=connection_id
        )
    if left.hooks:
        emit(left.hooks)
        await settle()
    return True
