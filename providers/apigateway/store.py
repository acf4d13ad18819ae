"""Connections, subscriptions and presence in three DynamoDB tables (infra/apigateway-tables.yaml).

    connections    connection_id                  socket_id, user_id, token_expires, channels (set)
    subscriptions  channel + connection_id        socket_id, user_id (presence channels)
    presence       channel + user_id              user_info, connections (set)

Fan-out and rosters are a Query on the channel, never a Scan. Every row carries `expires_at`
(TTL), because $disconnect is best effort; reads skip rows past it, as TTL deletes lazily.
boto3 is synchronous, so each call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from app.errors import ProviderUnavailable
from providers.apigateway import aws

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from providers.apigateway.settings import ApiGatewaySettings


@dataclass(frozen=True, slots=True)
class Connection:
    """One WebSocket connection, as $connect stored it."""

    connection_id: str
    socket_id: str
    expires_at: int
    user_id: str | None = None
    token_expires: int | None = None
    signed_in: str | None = None
    channels: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Subscription:
    """One connection subscribed to one channel (user_id on presence channels)."""

    channel: str
    connection_id: str
    socket_id: str
    user_id: str | None = None


class Conflict(Exception):
    """A conditional write found the row not as expected."""


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _opt(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(next(iter(value.values())))


class Store:
    """The three tables behind small async methods."""

    def __init__(
        self,
        settings: ApiGatewaySettings,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._connections = settings.table("connections")
        self._subscriptions = settings.table("subscriptions")
        self._presence = settings.table("presence")
        self._clock = clock

    @property
    def client(self) -> Any:
        """The DynamoDB client (created on first use)."""
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await asyncio.to_thread(
                getattr(self.client, operation), **params
            )
        except Exception as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(operation) from exc
            raise ProviderUnavailable(f"DynamoDB {operation} failed") from exc
        return result

    def _live(self, item: dict[str, Any]) -> bool:
        expires = item.get("expires_at")
        return expires is None or int(expires["N"]) > self._clock()

    # -- connections --------------------------------------------------------------------------
    async def add_connection(self, connection: Connection) -> None:
        """Store a new connection."""
        item = {
            "connection_id": _s(connection.connection_id),
            "socket_id": _s(connection.socket_id),
            "expires_at": _n(connection.expires_at),
            "connected_at": _n(int(self._clock())),
        }
        if connection.user_id is not None:
            item["user_id"] = _s(connection.user_id)
        if connection.token_expires is not None:
            item["token_expires"] = _n(connection.token_expires)
        await self._call("put_item", TableName=self._connections, Item=item)

    async def connection(self, connection_id: str) -> Connection | None:
        """A live connection, or None."""
        found = await self._call(
            "get_item",
            TableName=self._connections,
            Key={"connection_id": _s(connection_id)},
            ConsistentRead=True,
        )
        item = found.get("Item")
        return _connection(item) if item is not None and self._live(item) else None

    async def remove_connection(self, connection_id: str) -> Connection | None:
        """Delete the row; return what it held (None when another cleanup got there first)."""
        found = await self._call(
            "delete_item",
            TableName=self._connections,
            Key={"connection_id": _s(connection_id)},
            ReturnValues="ALL_OLD",
        )
        item = found.get("Attributes")
        return _connection(item) if item else None

    async def track_channel(self, connection_id: str, channel: str) -> None:
        """Remember the channel on the connection (for $disconnect); Conflict if it is gone."""
        await self._call(
            "update_item",
            TableName=self._connections,
            Key={"connection_id": _s(connection_id)},
            UpdateExpression="ADD channels :c",
            ConditionExpression="attribute_exists(connection_id)",
            ExpressionAttributeValues={":c": {"SS": [channel]}},
        )

    async def untrack_channel(self, connection_id: str, channel: str) -> None:
        """Forget the channel on the connection."""
        # A connection that is gone already took the channel with it.
        with contextlib.suppress(Conflict):
            await self._call(
                "update_item",
                TableName=self._connections,
                Key={"connection_id": _s(connection_id)},
                UpdateExpression="DELETE channels :c",
                ConditionExpression="attribute_exists(connection_id)",
                ExpressionAttributeValues={":c": {"SS": [channel]}},
            )

    async def sign_in(self, connection_id: str, user_id: str) -> None:
        """Record pusher:signin's user on the connection."""
        await self._call(
            "update_item",
            TableName=self._connections,
            Key={"connection_id": _s(connection_id)},
            UpdateExpression="SET signed_in = :u",
            ConditionExpression="attribute_exists(connection_id)",
            ExpressionAttributeValues={":u": _s(user_id)},
        )

    async def count_client_event(self, connection_id: str, *, second: int, limit: int) -> bool:
        """Count one client event in this second on the connection row; False past `limit`.

        Pusher's limit is per connection and per second: a counter on the row the frame already
        names costs one conditional write (two when a new second starts late in a burst)."""
        try:
            await self._call(
                "update_item",
                TableName=self._connections,
                Key={"connection_id": _s(connection_id)},
                UpdateExpression="SET event_count = event_count + :one",
                ConditionExpression="event_second = :s AND event_count < :limit",
                ExpressionAttributeValues={":one": _n(1), ":s": _n(second), ":limit": _n(limit)},
            )
            return True
        except Conflict:
            pass
        try:
            await self._call(
                "update_item",
                TableName=self._connections,
                Key={"connection_id": _s(connection_id)},
                UpdateExpression="SET event_second = :s, event_count = :one",
                ConditionExpression=(
                    "attribute_exists(connection_id) AND "
                    "(attribute_not_exists(event_second) OR event_second <> :s)"
                ),
                ExpressionAttributeValues={":one": _n(1), ":s": _n(second)},
            )
        except Conflict:
            return False  # this second's count is at the limit (or the connection is gone)
        return True

    # -- subscriptions --------------------------------------------------------------------------
    async def subscribe(self, channel: str, connection: Connection, user_id: str | None) -> None:
        """Add (or refresh) the connection's subscription to the channel."""
        item = {
            "channel": _s(channel),
            "connection_id": _s(connection.connection_id),
            "socket_id": _s(connection.socket_id),
            "expires_at": _n(connection.expires_at),
        }
        if user_id is not None:
            item["user_id"] = _s(user_id)
        await self._call("put_item", TableName=self._subscriptions, Item=item)

    async def unsubscribe(self, channel: str, connection_id: str) -> Subscription | None:
        """Delete the subscription; return it, or None if there was none."""
        found = await self._call(
            "delete_item",
            TableName=self._subscriptions,
            Key={"channel": _s(channel), "connection_id": _s(connection_id)},
            ReturnValues="ALL_OLD",
        )
        item = found.get("Attributes")
        return _subscription(item) if item else None

    async def subscription(self, channel: str, connection_id: str) -> Subscription | None:
        """The connection's live subscription to the channel, or None."""
        found = await self._call(
            "get_item",
            TableName=self._subscriptions,
            Key={"channel": _s(channel), "connection_id": _s(connection_id)},
            ConsistentRead=True,
        )
        item = found.get("Item")
        return _subscription(item) if item is not None and self._live(item) else None

    async def subscribers(
        self, channel: str, *, page_size: int
    ) -> AsyncIterator[list[Subscription]]:
        """The channel's live subscriptions, one Query page of at most `page_size` at a time."""
        params: dict[str, Any] = {
            "TableName": self._subscriptions,
            "KeyConditionExpression": "channel = :c",
            "ExpressionAttributeValues": {":c": _s(channel)},
            "Limit": page_size,
        }
        while True:
            found = await self._call("query", **params)
            page = [_subscription(i) for i in found.get("Items", []) if self._live(i)]
            if page:
                yield page
            last = found.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    async def count(self, channel: str) -> int:
        """How many live subscriptions the channel has."""
        return sum([len(page) async for page in self.subscribers(channel, page_size=1000)])

    # -- presence -------------------------------------------------------------------------------
    async def join(
        self, channel: str, user_id: str, user_info: dict[str, Any], connection: Connection
    ) -> bool:
        """Add the connection to the user's entry; True if the user was not present before."""
        found = await self._call(
            "update_item",
            TableName=self._presence,
            Key={"channel": _s(channel), "user_id": _s(user_id)},
            UpdateExpression="ADD connections :c SET user_info = :i, expires_at = :e",
            ExpressionAttributeValues={
                ":c": {"SS": [connection.connection_id]},
                ":i": _s(orjson.dumps(user_info).decode()),
                ":e": _n(connection.expires_at),
            },
            ReturnValues="UPDATED_OLD",
        )
        before = found.get("Attributes", {})
        # Expired members (TTL not yet run) count as absent: their user is announced again.
        return "connections" not in before or not self._live(before)

    async def leave(self, channel: str, user_id: str, connection_id: str) -> bool:
        """Remove the connection from the user's entry; True if it was the user's last one."""
        try:
            found = await self._call(
                "update_item",
                TableName=self._presence,
                Key={"channel": _s(channel), "user_id": _s(user_id)},
                UpdateExpression="DELETE connections :c",
                ConditionExpression="contains(connections, :id)",
                ExpressionAttributeValues={":c": {"SS": [connection_id]}, ":id": _s(connection_id)},
                ReturnValues="ALL_NEW",
            )
        except Conflict:
            return False  # not a member through this connection
        if "connections" in found.get("Attributes", {}):
            return False
        try:
            # Only if nobody joined in between: an empty set is no attribute at all.
            await self._call(
                "delete_item",
                TableName=self._presence,
                Key={"channel": _s(channel), "user_id": _s(user_id)},
                ConditionExpression="attribute_not_exists(connections)",
            )
        except Conflict:
            return False
        return True

    async def members(self, channel: str) -> list[tuple[str, dict[str, Any]]]:
        """(user_id, user_info) of every present user, in user id order."""
        params: dict[str, Any] = {
            "TableName": self._presence,
            "KeyConditionExpression": "channel = :c",
            "ExpressionAttributeValues": {":c": _s(channel)},
            "ConsistentRead": True,
        }
        members: list[tuple[str, dict[str, Any]]] = []
        while True:
            found = await self._call("query", **params)
            for item in found.get("Items", []):
                if "connections" in item and self._live(item):
                    info = orjson.loads(item["user_info"]["S"]) if "user_info" in item else {}
                    members.append((item["user_id"]["S"], info if isinstance(info, dict) else {}))
            last = found.get("LastEvaluatedKey")
            if not last:
                return members
            params["ExclusiveStartKey"] = last


def _connection(item: dict[str, Any]) -> Connection:
    token_expires = _opt(item, "token_expires")
    return Connection(
        connection_id=item["connection_id"]["S"],
        socket_id=item["socket_id"]["S"],
        expires_at=int(item["expires_at"]["N"]),
        user_id=_opt(item, "user_id"),
        token_expires=None if token_expires is None else int(token_expires),
        signed_in=_opt(item, "signed_in"),
        channels=frozenset(item.get("channels", {}).get("SS", [])),
    )


def _subscription(item: dict[str, Any]) -> Subscription:
    return Subscription(
        channel=item["channel"]["S"],
        connection_id=item["connection_id"]["S"],
        socket_id=item["socket_id"]["S"],
        user_id=_opt(item, "user_id"),
    )
