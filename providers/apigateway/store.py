"""Connections, subscriptions and presence in three DynamoDB tables (infra/apigateway-tables.yaml).

    connections    connection_id                  socket_id, user_id, token_expires, signed_in,
                                                  channels (set), members (set of "channel\nuser"),
                                                  the session's counters (<counter>_since, _count)
    subscriptions  channel + connection_id        socket_id, user_id (presence channels)
                   "#count:<channel>" + "#"       subscriptions (the count), announced_at
                   "#cache:<channel>" + "#"       a cache channel's last event (cache.py)
    presence       channel + user_id              user_info, connections (set)
                   "#online" + user_id            a signed-in user's connections (watchlists)

The connection's row is its Pusher session's state (providers/apigateway/port.py reads it once
per frame); each change the session makes is one conditional write here, never a rewrite of the
row, so that frames of one connection handled at once by two invocations do not undo each other.
Fan-out and rosters are a Query on the channel, never a Scan. Every row carries `expires_at`
(TTL), because $disconnect is best effort; reads skip rows past it, as TTL deletes lazily.
Presence is in presence.py, what the tables share in dynamo.py.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from providers.apigateway.dynamo import Conflict, n, optional, s
from providers.apigateway.presence import PresenceTable
from providers.apigateway.records import Connection, Subscription
from providers.pusherproto.cache import CacheEntry
from providers.pusherproto.port import Counter
from providers.pusherproto.state import Window

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

# A presence membership on the connection's row: the channel, a newline, the user id. Channel
# names hold no newline (core.validation), so the first one splits the two.
MEMBER_SEPARATOR = "\n"

# Rows of the subscriptions table that are a channel's own, not a connection's, each in a
# partition of its own ("#" starts no channel name), so that fan-out's Query never reads them.
COUNT_ROW = "#count:"
CACHE_ROW = "#cache:"
OWN = {"connection_id": {"S": "#"}}
ONLINE = "#online"  # the presence table's pseudo-channel of signed-in users
BATCH_GET_KEYS = 100  # DynamoDB's BatchGetItem limit

__all__ = ["Conflict", "Connection", "Store", "Subscription"]


class Store(PresenceTable):
    """The three tables behind small async methods."""

    # -- connections --------------------------------------------------------------------------
    async def add_connection(self, connection: Connection) -> None:
        """Store a new connection."""
        item = {
            "connection_id": s(connection.connection_id),
            "socket_id": s(connection.socket_id),
            "expires_at": n(connection.expires_at),
            "connected_at": n(int(self._clock())),
        }
        if connection.user_id is not None:
            item["user_id"] = s(connection.user_id)
        if connection.token_expires is not None:
            item["token_expires"] = n(connection.token_expires)
        await self._call("put_item", TableName=self._connections, Item=item)

    async def connection(self, connection_id: str) -> Connection | None:
        """A live connection, or None."""
        found = await self._call(
            "get_item",
            TableName=self._connections,
            Key={"connection_id": s(connection_id)},
            ConsistentRead=True,
        )
        item = found.get("Item")
        return _connection(item) if item is not None and self._live(item) else None

    async def remove_connection(self, connection_id: str) -> Connection | None:
        """Delete the row; return what it held (None when another cleanup got there first)."""
        found = await self._call(
            "delete_item",
            TableName=self._connections,
            Key={"connection_id": s(connection_id)},
            ReturnValues="ALL_OLD",
        )
        item = found.get("Attributes")
        return _connection(item) if item else None

    async def track_channel(
        self, connection_id: str, channel: str, member: str | None = None
    ) -> None:
        """Remember the channel (and the presence member) on the connection, for the session
        and for $disconnect; Conflict if the connection is gone."""
        await self._call(
            "update_item",
            TableName=self._connections,
            Key={"connection_id": s(connection_id)},
            UpdateExpression="ADD " + _sets(member),
            ConditionExpression="attribute_exists(connection_id)",
            **_set_values(channel, member),
        )

    async def untrack_channel(
        self, connection_id: str, channel: str, member: str | None = None
    ) -> None:
        """Forget the channel (and the presence member) on the connection."""
        # A connection that is gone already took the channel with it.
        with contextlib.suppress(Conflict):
            await self._call(
                "update_item",
                TableName=self._connections,
                Key={"connection_id": s(connection_id)},
                UpdateExpression="DELETE " + _sets(member),
                ConditionExpression="attribute_exists(connection_id)",
                **_set_values(channel, member),
            )

    async def sign_in(self, connection_id: str, user_id: str) -> None:
        """Record pusher:signin's user on the connection."""
        await self._call(
            "update_item",
            TableName=self._connections,
            Key={"connection_id": s(connection_id)},
            UpdateExpression="SET signed_in = :u",
            ConditionExpression="attribute_exists(connection_id)",
            ExpressionAttributeValues={":u": s(user_id)},
        )

    async def count_in_window(
        self, connection_id: str, counter: Counter, *, now: float, span: float, limit: int
    ) -> bool:
        """Count one in the connection's window of `counter` (as pusherproto's Window.counted);
        False when the window is full or the connection is gone.

        Conditional writes, each an increment rather than a rewrite, so that invocations
        counting at once for one connection never both take the last place."""
        now_ms = int(now * 1000)
        names = {"#s": f"{counter}_since", "#c": f"{counter}_count"}
        floor = n(now_ms - int(span * 1000))
        # Twice: when another invocation opens the new window between this one's two writes,
        # this one counts in that window rather than taking itself for refused.
        for _ in range(2):
            try:
                await self._call(
                    "update_item",
                    TableName=self._connections,
                    Key={"connection_id": s(connection_id)},
                    UpdateExpression="SET #c = #c + :one",
                    ConditionExpression="#s > :floor AND #c < :limit",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":one": n(1), ":floor": floor, ":limit": n(limit)},
                )
                return True
            except Conflict:
                pass
            try:  # the window ran out (or never opened): a new one, with this count
                await self._call(
                    "update_item",
                    TableName=self._connections,
                    Key={"connection_id": s(connection_id)},
                    UpdateExpression="SET #s = :now, #c = :one",
                    ConditionExpression=(
                        "attribute_exists(connection_id) "
                        "AND (attribute_not_exists(#s) OR #s <= :floor)"
                    ),
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":one": n(1), ":now": n(now_ms), ":floor": floor},
                )
                return True
            except Conflict:
                pass  # a full window, a gone connection, or another invocation opened it
        return False

    # -- subscriptions --------------------------------------------------------------------------
    async def subscribe(self, channel: str, connection: Connection, user_id: str | None) -> int:
        """Add (or refresh) the connection's subscription to the channel; the channel's
        subscriptions now (counted once per connection, however often it is refreshed)."""
        item = {
            "channel": s(channel),
            "connection_id": s(connection.connection_id),
            "socket_id": s(connection.socket_id),
            "expires_at": n(connection.expires_at),
        }
        if user_id is not None:
            item["user_id"] = s(user_id)
        found = await self._call(
            "put_item", TableName=self._subscriptions, Item=item, ReturnValues="ALL_OLD"
        )
        return await self._add_count(channel, 0 if found.get("Attributes") else 1)

    async def uncount(self, channel: str) -> int:
        """One subscription of the channel fewer (its row is deleted); the count now."""
        return await self._add_count(channel, -1)

    async def _add_count(self, channel: str, change: int) -> int:
        found = await self._call(
            "update_item",
            TableName=self._subscriptions,
            Key={"channel": s(COUNT_ROW + channel), **OWN},
            UpdateExpression="ADD subscriptions :d",
            ExpressionAttributeValues={":d": n(change)},
            ReturnValues="ALL_NEW",
        )
        # A count that drifted below zero (rows that expired rather than left) reads as none.
        return max(0, int(found.get("Attributes", {}).get("subscriptions", {"N": "0"})["N"]))

    async def channel_counts(self, prefix: str = "") -> dict[str, int]:
        """Every channel with subscriptions whose name starts with `prefix`, from the count rows
        (a Scan: Pusher's channel listing is an occasional operator's query, not a hot path)."""
        condition = "begins_with(channel, :p) AND subscriptions > :z"
        values: dict[str, Any] = {":p": s(COUNT_ROW + prefix), ":z": n(0)}
        params: dict[str, Any] = {
            "TableName": self._subscriptions,
            "FilterExpression": condition,
            "ExpressionAttributeValues": values,
        }
        found: dict[str, int] = {}
        while True:
            page = await self._call("scan", **params)
            for item in page.get("Items", []):
                channel = item["channel"]["S"].removeprefix(COUNT_ROW)
                if not channel.startswith("#"):
                    found[channel] = int(item["subscriptions"]["N"])
            last = page.get("LastEvaluatedKey")
            if not last:
                return dict(sorted(found.items()))
            params["ExclusiveStartKey"] = last

    async def throttle(self, channel: str, *, now: float, span: float) -> bool:
        """Take the channel's turn to announce its count: False when the last announcement is
        less than `span` seconds old (one conditional write; concurrent callers get one turn)."""
        now_ms = int(now * 1000)
        try:
            await self._call(
                "update_item",
                TableName=self._subscriptions,
                Key={"channel": s(COUNT_ROW + channel), **OWN},
                UpdateExpression="SET announced_at = :now",
                ConditionExpression="attribute_not_exists(announced_at) OR announced_at <= :floor",
                ExpressionAttributeValues={
                    ":now": n(now_ms),
                    ":floor": n(now_ms - int(span * 1000)),
                },
            )
        except Conflict:
            return False
        return True

    # -- cache channels ---------------------------------------------------------------------------
    async def keep(self, channel: str, event: str, data: str, *, until: float) -> None:
        """Keep a cache channel's last published event until `until` (TTL removes it later)."""
        item = {
            "channel": s(CACHE_ROW + channel),
            **OWN,
            "event": s(event),
            "data": s(data),
            "cached_until": n(int(until)),
            "expires_at": n(int(until)),
        }
        await self._call("put_item", TableName=self._subscriptions, Item=item)

    async def cached(self, channel: str) -> CacheEntry | None:
        """The channel's kept event, if any."""
        found = await self._call(
            "get_item",
            TableName=self._subscriptions,
            Key={"channel": s(CACHE_ROW + channel), **OWN},
            ConsistentRead=True,
        )
        item = found.get("Item")
        if item is None:
            return None
        until = float(item["cached_until"]["N"])
        return CacheEntry(item["event"]["S"], item["data"]["S"], until)

    # -- signed-in users --------------------------------------------------------------------------
    async def online(self, user_ids: Sequence[str]) -> list[str]:
        """Which of these users have a live signed-in connection (BatchGetItem, 100 at a time)."""
        found: set[str] = set()
        wanted = list(dict.fromkeys(user_ids))
        for start in range(0, len(wanted), BATCH_GET_KEYS):
            keys = [
                {"channel": s(ONLINE), "user_id": s(u)}
                for u in wanted[start : start + BATCH_GET_KEYS]
            ]
            request: dict[str, Any] = {
                self._presence: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": ("user_id, connections, expires_at"),
                }
            }
            while request:
                answer = await self._call("batch_get_item", RequestItems=request)
                for item in answer.get("Responses", {}).get(self._presence, []):
                    if "connections" in item and self._live(item):
                        found.add(item["user_id"]["S"])
                request = answer.get("UnprocessedKeys") or {}
        return [u for u in user_ids if u in found]

    async def unsubscribe(self, channel: str, connection_id: str) -> Subscription | None:
        """Delete the subscription; return it, or None if there was none."""
        found = await self._call(
            "delete_item",
            TableName=self._subscriptions,
            Key={"channel": s(channel), "connection_id": s(connection_id)},
            ReturnValues="ALL_OLD",
        )
        item = found.get("Attributes")
        return _subscription(item) if item else None

    async def subscription(self, channel: str, connection_id: str) -> Subscription | None:
        """The connection's live subscription to the channel, or None."""
        found = await self._call(
            "get_item",
            TableName=self._subscriptions,
            Key={"channel": s(channel), "connection_id": s(connection_id)},
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
            "ExpressionAttributeValues": {":c": s(channel)},
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


def _sets(member: str | None) -> str:
    return "channels :c" if member is None else "channels :c, #m :m"


def _set_values(channel: str, member: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {":c": {"SS": [channel]}}
    if member is None:
        return {"ExpressionAttributeValues": values}
    values[":m"] = {"SS": [channel + MEMBER_SEPARATOR + member]}
    return {"ExpressionAttributeValues": values, "ExpressionAttributeNames": {"#m": "members"}}


def _window(item: dict[str, Any], counter: str) -> Window:
    since, count = optional(item, f"{counter}_since"), optional(item, f"{counter}_count")
    if since is None or count is None:
        return Window()
    return Window(int(since) / 1000, int(count))


def _connection(item: dict[str, Any]) -> Connection:
    token_expires = optional(item, "token_expires")
    members = (e.partition(MEMBER_SEPARATOR) for e in item.get("members", {}).get("SS", []))
    return Connection(
        connection_id=item["connection_id"]["S"],
        socket_id=item["socket_id"]["S"],
        expires_at=int(item["expires_at"]["N"]),
        user_id=optional(item, "user_id"),
        token_expires=None if token_expires is None else int(token_expires),
        signed_in=optional(item, "signed_in"),
        channels=frozenset(item.get("channels", {}).get("SS", [])),
        members={channel: user_id for channel, _, user_id in members},
        client_events=_window(item, Counter.CLIENT_EVENTS),
        invalid_frames=_window(item, Counter.INVALID_FRAMES),
    )


def _subscription(item: dict[str, Any]) -> Subscription:
    return Subscription(
        channel=item["channel"]["S"],
        connection_id=item["connection_id"]["S"],
        socket_id=item["socket_id"]["S"],
        user_id=optional(item, "user_id"),
    )
