"""The DynamoDB store: shared state for the relay on Lambda (one table, TTL on `exp`).

Calls go through core/aws.py, whose shared client (and boto3) is built on the first call.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

from core import aws
from core.aws import Conflict
from core.errors import ProviderUnavailable
from core.stores.base import Store, bucket_ttl, refill, spend

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_CONFLICT_RETRIES = 20
CONFLICT_BACKOFF_SECONDS = 0.005


class DynamoStore(Store):
    """Items `{pk, v, exp}` for values and `{pk, t, ts, exp}` for token buckets."""

    name = "dynamodb"

    def __init__(
        self,
        table: str,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table
        self._clock = clock

    async def _call(self, method: str, **kwargs: Any) -> Any:
        client = self._client or aws.client("dynamodb")
        return await aws.call(client, method, f"the DynamoDB store failed: {method}", **kwargs)

    async def _item(self, key: str) -> dict[str, Any] | None:
        found = await self._call(
            "get_item", TableName=self._table, Key={"pk": {"S": key}}, ConsistentRead=True
        )
        item: dict[str, Any] | None = found.get("Item")
        # TTL deletion is lazy (DynamoDB may keep expired items for days): check it ourselves.
        if item is None or float(item["exp"]["N"]) <= self._clock():
            return None
        return item

    async def get(self, key: str) -> bytes | None:
        """The value, or None."""
        item = await self._item(key)
        return None if item is None or "v" not in item else bytes(item["v"]["B"])

    async def put_if_absent(self, key: str, value: bytes, *, ttl: float) -> bytes | None:
        """A conditional put: absent, or present but expired."""
        for _ in range(MAX_CONFLICT_RETRIES):
            now = self._clock()
            try:
                await self._call(
                    "put_item",
                    TableName=self._table,
                    Item=_value_item(key, value, now + ttl),
                    ConditionExpression="attribute_not_exists(pk) OR #exp <= :now",
                    ExpressionAttributeNames={"#exp": "exp"},
                    ExpressionAttributeValues={":now": {"N": repr(now)}},
                )
                return None
            except Conflict:
                existing = await self.get(key)
                if existing is not None:
                    return existing
        raise ProviderUnavailable("the DynamoDB store kept conflicting")

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        """Store, replacing."""
        item = _value_item(key, value, self._clock() + ttl)
        await self._call("put_item", TableName=self._table, Item=item)

    async def delete(self, key: str) -> None:
        """Forget."""
        await self._call("delete_item", TableName=self._table, Key={"pk": {"S": key}})

    async def take(self, key: str, *, rate: float, burst: float, cost: float = 1.0) -> float:
        """Read, refill, write back on the condition nobody wrote in between (else retry)."""
        pk = "bucket:" + key
        for attempt in range(MAX_CONFLICT_RETRIES):
            now = self._clock()
            item = await self._item(pk)
            tokens, updated = burst, now
            if item is not None:
                tokens, updated = float(item["t"]["N"]), float(item["ts"]["N"])
            tokens = refill(tokens, now - updated, rate=rate, burst=burst)
            tokens, wait = spend(tokens, cost=cost, rate=rate, burst=burst)
            # Absent, or present but expired (DynamoDB's TTL deletes lazily, days later at worst).
            condition = "attribute_not_exists(pk) OR #exp <= :now" if item is None else "ts = :seen"
            names = {"#exp": "exp"} if item is None else {}
            values = {":now": {"N": repr(now)}} if item is None else {":seen": item["ts"]}
            try:
                await self._call(
                    "put_item",
                    TableName=self._table,
                    Item={
                        "pk": {"S": pk},
                        "t": {"N": repr(tokens)},
                        "ts": {"N": repr(now)},
                        "exp": {"N": str(int(now + bucket_ttl(rate, burst)) + 1)},
                    },
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                    **({"ExpressionAttributeNames": names} if names else {}),
                )
                return wait
            except Conflict:
                # Another writer won the race: back off a little, at random, and read again.
                pause = random.random() * CONFLICT_BACKOFF_SECONDS * (attempt + 1)  # noqa: S311
                await asyncio.sleep(pause)
        raise ProviderUnavailable("the DynamoDB store kept conflicting")


def _value_item(key: str, value: bytes, expires: float) -> dict[str, Any]:
    return {"pk": {"S": key}, "v": {"B": value}, "exp": {"N": repr(expires)}}
