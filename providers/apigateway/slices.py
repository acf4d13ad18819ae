"""Large channels: subscribers past what one invocation serves travel to SQS in slices.

The publishing invocation posts to the first slice itself and queues one message per further
slice: the frame, and the connection ids of that slice (read from the same Query pages, so a
slice is exactly one page). The `fanout` function takes one message per invocation and posts it.
A message stays under SQS's 256 KiB: a frame is at most 128 KiB, and a slice that would not fit
is split in two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from msgspec import Struct

from core import aws
from core.errors import ProviderUnavailable

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

MAX_BODY_BYTES = 250_000  # under SQS's 262,144, for the attributes SQS counts too
MAX_BATCH_ENTRIES = 10  # SQS SendMessageBatch
VERSION = 1


class Slice(Struct, frozen=True):
    """One queued part of a fan-out."""

    channel: str
    frame: str
    connections: tuple[str, ...]

    def encode(self) -> str:
        """The SQS message body."""
        body = {"v": VERSION, "channel": self.channel, "frame": self.frame}
        return orjson.dumps({**body, "connections": list(self.connections)}).decode()

    @classmethod
    def decode(cls, body: str) -> Slice:
        """Parse a message body; ValueError if it is not a slice this version wrote."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError("a slice is a JSON object") from exc
        if not isinstance(parsed, dict) or parsed.get("v") != VERSION:
            raise ValueError("not a version 1 slice")
        channel, frame, ids = parsed.get("channel"), parsed.get("frame"), parsed.get("connections")
        if not isinstance(channel, str) or not isinstance(frame, str) or not isinstance(ids, list):
            raise ValueError("a slice needs channel, frame and connections")
        if not all(isinstance(i, str) for i in ids):
            raise ValueError("connection ids are strings")
        return cls(channel, frame, tuple(ids))


def bodies(channel: str, frame: str, connections: Sequence[str]) -> Iterator[str]:
    """Message bodies for these connections, split until each fits in one SQS message."""
    body = Slice(channel, frame, tuple(connections)).encode()
    if len(body.encode()) <= MAX_BODY_BYTES or len(connections) <= 1:
        yield body
        return
    half = len(connections) // 2
    yield from bodies(channel, frame, connections[:half])
    yield from bodies(channel, frame, connections[half:])


class SliceQueue:
    """The fan-out queue (a name, resolved to its URL once, or a URL)."""

    def __init__(self, queue: str, *, client: Any = None) -> None:
        self._queue = queue
        self._url = queue if queue.startswith(("https://", "http://")) else None
        self._client = client

    @property
    def client(self) -> Any:
        """The SQS client (the shared one unless one was given)."""
        return self._client or aws.client("sqs")

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return await aws.call(self.client, operation, f"SQS {operation} failed", **params)

    async def url(self) -> str:
        """The queue URL."""
        if self._url is None:
            found = await self._call("get_queue_url", QueueName=self._queue)
            self._url = str(found["QueueUrl"])
        return self._url

    async def enqueue(self, channel: str, frame: str, groups: Sequence[Sequence[str]]) -> int:
        """Queue one message per group (split if needed); return how many were sent."""
        messages = [b for group in groups for b in bodies(channel, frame, group)]
        url = await self.url()
        batch: list[str] = []
        size = 0
        sent = 0
        for body in messages:
            length = len(body.encode())
            # A batch is at most 10 messages and 256 KiB in all.
            if batch and (len(batch) == MAX_BATCH_ENTRIES or size + length > MAX_BODY_BYTES):
                sent += await self._send(url, batch)
                batch, size = [], 0
            batch.append(body)
            size += length
        if batch:
            sent += await self._send(url, batch)
        return sent

    async def _send(self, url: str, batch: list[str]) -> int:
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)]
        found = await self._call("send_message_batch", QueueUrl=url, Entries=entries)
        failed = found.get("Failed") or []
        if failed:
            raise ProviderUnavailable(f"SQS refused {len(failed)} of {len(batch)} fan-out slices")
        return len(batch)
