"""Idempotency-Key: a repeat within the TTL gets the first answer and publishes nothing.

The first request claims the key with an atomic put-if-absent (a short-lived `pending` record),
publishes, then stores its answer for the TTL. A concurrent repeat waits for that answer; a repeat
with a different body is refused; a first request that failed releases the key so a retry runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import TYPE_CHECKING, Any

import orjson

from app.errors import IdempotencyInProgress, IdempotencyKeyReused

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from app.stores.base import Store

PENDING_TTL_SECONDS = 60.0  # a process that dies mid-publish frees the key after this
POLL_SECONDS = 0.05


def fingerprint(*parts: bytes) -> str:
    """What makes two requests the same request."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class Idempotency:
    """Runs a publish at most once per (caller, key)."""

    def __init__(self, store: Store, *, ttl: float, wait: float) -> None:
        self.store = store
        self.ttl = ttl
        self.wait = wait

    async def once(
        self, scope: str, key: str, request: str, publish: Callable[[], Awaitable[Any]]
    ) -> tuple[Any, bool]:
        """The answer, and whether it was replayed from an earlier request."""
        record = f"idem:{scope}:{key}"
        claim = orjson.dumps({"state": "pending", "request": request})
        existing = await self.store.put_if_absent(record, claim, ttl=PENDING_TTL_SECONDS)
        deadline = time.monotonic() + self.wait
        while existing is not None:
            state = orjson.loads(existing)
            if state["request"] != request:
                raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
            if state["state"] == "done":
                return state["answer"], True
            if time.monotonic() >= deadline:
                raise IdempotencyInProgress("the first request with this key is still running")
            await asyncio.sleep(POLL_SECONDS)
            existing = await self.store.get(record)
            if existing is None:  # the first request failed and released the key: run it here
                existing = await self.store.put_if_absent(record, claim, ttl=PENDING_TTL_SECONDS)
        try:
            answer = await publish()
        except BaseException:
            await self.store.delete(record)
            raise
        done = orjson.dumps({"state": "done", "request": request, "answer": answer})
        await self.store.set(record, done, ttl=self.ttl)
        return answer, False
