"""Presence: one row per (channel, user) holding the set of that user's connections, so that a
member is announced on its first connection and removed after its last, whatever the order and
however many Lambda instances handle them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from providers.apigateway.dynamo import Conflict, Tables, n, s

if TYPE_CHECKING:
    from providers.apigateway.records import Connection


class PresenceTable(Tables):
    """Joining, leaving and listing a presence channel's users."""

    async def join(
        self, channel: str, user_id: str, user_info: dict[str, Any], connection: Connection
    ) -> bool:
        """Add the connection to the user's entry; True if the user was not present before."""
        found = await self._call(
            "update_item",
            TableName=self._presence,
            Key={"channel": s(channel), "user_id": s(user_id)},
            UpdateExpression="ADD connections :c SET user_info = :i, expires_at = :e",
            ExpressionAttributeValues={
                ":c": {"SS": [connection.connection_id]},
                ":i": s(orjson.dumps(user_info).decode()),
                ":e": n(connection.expires_at),
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
                Key={"channel": s(channel), "user_id": s(user_id)},
                UpdateExpression="DELETE connections :c",
                ConditionExpression="contains(connections, :id)",
                ExpressionAttributeValues={":c": {"SS": [connection_id]}, ":id": s(connection_id)},
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
                Key={"channel": s(channel), "user_id": s(user_id)},
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
            "ExpressionAttributeValues": {":c": s(channel)},
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
