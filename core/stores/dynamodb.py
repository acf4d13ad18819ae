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
from core.stores.base import LogPage, Store, bucket_ttl, refill, spend

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MAX_CONFLICT_RETRIES = 20
CONFLICT_BACKOFF_SECONDS = 0.005
WRITE_BATCH = 25  # BatchWriteItem's limit
READ_BATCH = 100  # BatchGetItem's limit
# A log read looks at most this many windows of `limit` numbers: numbers a failed publish
# reserved hold no entry, and a read should not walk a long run of them.
READ_WINDOWS = 10


class DynamoStore(Store):
    """Items `{pk, v, exp}` for values and `{pk, t, ts, exp}` for token buckets; a channel log
    is `{pk: log:<name>, e, n, exp}` and one `{pk: log:<name>:<epoch>:<number>, v, exp}` per
    entry (the table has a hash key only: entries are read by number, and left to TTL)."""

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

    # -- channel logs -------------------------------------------------------------------------
    async def log_reserve(
        self, name: str, count: int, *, epoch: str, ttl: float
    ) -> tuple[str, int]:
        """ADD to a live log's counter, else start the log (a conditional put); retry a race."""
        key = {"pk": {"S": "log:" + name}}
        for _ in range(MAX_CONFLICT_RETRIES):
            now = self._clock()
            exp = {"N": repr(now + ttl)}
            try:
                found = await self._call(
                    "update_item",
                    TableName=self._table,
                    Key=key,
                    UpdateExpression="ADD n :c SET #exp = :exp",
                    ConditionExpression="attribute_exists(pk) AND #exp > :now",
                    ExpressionAttributeNames={"#exp": "exp"},
                    ExpressionAttributeValues={
                        ":c": {"N": str(count)},
                        ":exp": exp,
                        ":now": {"N": repr(now)},
                    },
                    ReturnValues="ALL_NEW",
                )
                attributes = found["Attributes"]
                return attributes["e"]["S"], int(attributes["n"]["N"])
            except Conflict:
                pass
            try:
                await self._call(
                    "put_item",
                    TableName=self._table,
                    Item={**key, "e": {"S": epoch}, "n": {"N": str(count)}, "exp": exp},
                    ConditionExpression="attribute_not_exists(pk) OR #exp <= :now",
                    ExpressionAttributeNames={"#exp": "exp"},
                    ExpressionAttributeValues={":now": {"N": repr(now)}},
                )
                return epoch, count
            except Conflict:
                continue  # another writer started it: add to theirs
        raise ProviderUnavailable("the DynamoDB store kept conflicting")

    async def log_append(
        self, name: str, epoch: str, entries: Sequence[tuple[int, bytes]], *, ttl: float, keep: int
    ) -> None:
        """One item per entry, under its epoch (an ended epoch's are never read); TTL trims."""
        expires = self._clock() + ttl
        requests = [
            {"PutRequest": {"Item": _value_item(_entry_key(name, epoch, n), p, expires)}}
            for n, p in entries
        ]
        for start in range(0, len(requests), WRITE_BATCH):
            pending = {self._table: requests[start : start + WRITE_BATCH]}
            for _ in range(MAX_CONFLICT_RETRIES):
                found = await self._call("batch_write_item", RequestItems=pending)
                pending = found.get("UnprocessedItems") or {}
                if not pending:
                    break
                await asyncio.sleep(CONFLICT_BACKOFF_SECONDS)
            else:
                raise ProviderUnavailable("the DynamoDB store left history entries unwritten")

    async def log_read(self, name: str, *, after: int | None, limit: int) -> LogPage:
        """The log's item, then its entries by number, a window of `limit` numbers at a time."""
        meta = await self._item("log:" + name)
        if meta is None:
            return LogPage(None, 0, [])
        epoch, newest = meta["e"]["S"], int(meta["n"]["N"])
        found: list[tuple[int, bytes]] = []
        if after is None:  # windows backwards from the newest
            end = newest
            for _ in range(READ_WINDOWS):
                if end < 1 or len(found) >= limit:
                    break
                numbers = range(max(1, end - limit + 1), end + 1)
                found += await self._entries(name, epoch, numbers)
                end = numbers[0] - 1
            return LogPage(epoch, newest, sorted(found)[-limit:])
        start = after + 1
        for _ in range(READ_WINDOWS):
            if start > newest or len(found) >= limit:
                break
            numbers = range(start, min(newest, start + limit - 1) + 1)
            found += await self._entries(name, epoch, numbers)
            start = numbers[-1] + 1
        return LogPage(epoch, newest, sorted(found)[:limit])

    async def _entries(self, name: str, epoch: str, numbers: range) -> list[tuple[int, bytes]]:
        now = self._clock()
        found: list[tuple[int, bytes]] = []
        for first in range(0, len(numbers), READ_BATCH):
            keys = [{"pk": {"S": _entry_key(name, epoch, n)}} for n in numbers[first:][:READ_BATCH]]
            pending: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while pending:
                answer = await self._call("batch_get_item", RequestItems=pending)
                for item in answer.get("Responses", {}).get(self._table, []):
                    if float(item["exp"]["N"]) > now:
                        number = int(item["pk"]["S"].rsplit(":", 1)[1])
                        found.append((number, bytes(item["v"]["B"])))
                pending = answer.get("UnprocessedKeys") or {}
        return found


def _entry_key(name: str, epoch: str, number: int) -> str:
    return f"log:{name}:{epoch}:{number}"


def _value_item(key: str, value: bytes, expires: float) -> dict[str, Any]:
    return {"pk": {"S": key}, "v": {"B": value}, "exp": {"N": repr(expires)}}
