"""Idempotency-Key: a repeat within the TTL gets the first answer and publishes nothing.

The first request claims the key with an atomic put-if-absent (a `pending` record saying when it
started), publishes, then stores its answer for the TTL. A concurrent repeat waits for that
answer; a repeat with a different body is refused (422). When the publish fails, what becomes of
the key depends on whether the provider may have the messages:

- surely not (`accepted: false`: 502, 503; a refusal before delivery): the key is released, so a
  retry publishes;
- unknown (504 `accepted: null`; an unexpected error; a claim older than PENDING_SECONDS, whose
  process died mid-publish): the key is kept for the TTL. A retry that comes while the provider
  still drops repeated message ids (`Limits.idempotent_ids_seconds` after the first attempt
  started: Ably) resends under the same ids; any other retry sends nothing and gets the first
  504 again, with `Idempotent-Replayed: true`. To publish regardless, the caller takes a new key.

Each caller holds at most `per_caller` new keys at once, refilled at `per_caller` per TTL (a token
bucket in the store, so its live records never exceed twice that): past it a new key is refused
with 429 and Retry-After, and nobody else's records are touched. A released key gives its token
back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from core.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    ProviderTimeout,
    RateLimited,
    RelayError,
    TimeoutReplayed,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from core.stores.base import Store

log = logging.getLogger(__name__)

PENDING_SECONDS = 60.0  # a claim older than this: its process died or hangs, outcome unknown
POLL_SECONDS = 0.05
UNANSWERED = (
    "the first request with this Idempotency-Key ended without an answer; the provider may or "
    "may not have its messages"
)
_REBUILT = frozenset({"accepted", "retryable"})  # set again by ProviderTimeout itself


def fingerprint(*parts: bytes) -> str:
    """What makes two requests the same request."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class Idempotency:
    """Runs a publish at most once per (caller, key)."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float,
        wait: float,
        per_caller: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.wait = wait
        self.per_caller = per_caller
        self.clock = clock  # wall time: claims are compared across processes

    async def once(
        self,
        scope: str,
        key: str,
        request: str,
        publish: Callable[[], Awaitable[Any]],
        *,
        resend_within: float = 0.0,
    ) -> tuple[Any, bool]:
        """The answer, and whether it was replayed from an earlier request.

        `resend_within`: how long after a first attempt of unknown outcome the provider still
        drops a resend of the same message ids (0: never resend)."""
        record = f"idem:{scope}:{key}"
        existing, claim = await self._claim(scope, record, request)
        deadline = time.monotonic() + self.wait
        while existing is not None:
            state = orjson.loads(existing)
            if state["request"] != request:
                raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
            if state["state"] == "done":
                return state["answer"], True
            age = self.clock() - float(state.get("started", self.clock()))
            if state["state"] == "pending" and age < PENDING_SECONDS:
                if time.monotonic() >= deadline:
                    raise IdempotencyInProgress("the first request with this key is still running")
                await asyncio.sleep(POLL_SECONDS)
                existing = await self.store.get(record)
                if existing is None:  # the first request surely failed and released the key
                    existing, claim = await self._claim(scope, record, request)
                continue
            # Unknown outcome: the first attempt timed out, failed oddly, or its process died.
            if age < resend_within:
                return await self._resend(record, request, state, publish)
            raise TimeoutReplayed(state.get("detail", UNANSWERED), **state.get("extra", {}))
        return await self._first(scope, record, request, claim, publish)

    async def _claim(self, scope: str, record: str, request: str) -> tuple[bytes | None, bytes]:
        """Put a pending record unless one lives; a new record costs the caller one key."""
        claim = orjson.dumps({"state": "pending", "request": request, "started": self.clock()})
        existing = await self.store.put_if_absent(record, claim, ttl=self.ttl)
        if existing is None:
            wait = await self.store.take(
                _quota(scope), rate=self.per_caller / self.ttl, burst=self.per_caller
            )
            if wait > 0:
                await self.store.delete(record)
                raise RateLimited(
                    f"this caller already holds its {self.per_caller} Idempotency-Keys; one "
                    f"frees every {self.ttl / self.per_caller:g} s (or publish without a key)",
                    retry_after=wait,
                    limit=self.per_caller,
                )
        return existing, claim

    async def _first(
        self,
        scope: str,
        record: str,
        request: str,
        claim: bytes,
        publish: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, bool]:
        try:
            answer = await publish()
        except BaseException as exc:
            if _surely_not_taken(exc):
                await self._release(scope, record, claim)
            else:
                await self._keep_unknown(record, request, orjson.loads(claim)["started"], exc)
            raise
        await self._save(record, request, answer)
        return answer, False

    async def _resend(
        self,
        record: str,
        request: str,
        state: dict[str, Any],
        publish: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, bool]:
        """Send the first attempt's messages again, under the ids the provider deduplicates."""
        try:
            answer = await publish()
        except Exception as exc:
            # The first attempt's outcome is still unknown, whatever became of this one: the
            # record stays as it was (its start time bounds the resend window).
            reason = exc.detail if isinstance(exc, RelayError) else type(exc).__name__
            raise ProviderTimeout(
                f"{state.get('detail', UNANSWERED)}; resending it under the same message ids "
                f"failed too ({reason})"
            ) from exc
        await self._save(record, request, answer)
        return answer, False

    async def _save(self, record: str, request: str, answer: Any) -> None:
        done = orjson.dumps({"state": "done", "request": request, "answer": answer})
        try:
            await self.store.set(record, done, ttl=self.ttl)
        except RelayError:
            # Published: the caller gets its answer. The pending record turns "unknown" after
            # PENDING_SECONDS, so a retry never publishes twice.
            log.warning("idempotency: the answer of %s could not be stored", record)

    async def _release(self, scope: str, record: str, claim: bytes) -> None:
        try:
            # Only our own claim: a repeat that took this one for dead may have resent and
            # stored its answer meanwhile.
            if await self.store.get(record) != claim:
                return
            await self.store.delete(record)
            await self.store.take(
                _quota(scope), rate=self.per_caller / self.ttl, burst=self.per_caller, cost=-1
            )
        except RelayError:
            log.warning("idempotency: %s could not be released", record)

    async def _keep_unknown(
        self, record: str, request: str, started: float, exc: BaseException
    ) -> None:
        detail, extra = UNANSWERED, {}
        if isinstance(exc, RelayError):
            detail = exc.detail
            extra = {k: v for k, v in exc.extra.items() if k not in _REBUILT}
        unknown: dict[str, Any] = {"state": "unknown", "request": request, "started": started}
        unknown.update(detail=detail, extra=extra)
        try:
            await self.store.set(record, orjson.dumps(unknown), ttl=self.ttl)
        except RelayError:
            log.warning("idempotency: the unknown outcome of %s could not be stored", record)


def _quota(scope: str) -> str:
    return f"idem-quota:{scope}"


def _surely_not_taken(exc: BaseException) -> bool:
    """The relay's own refusals and `accepted: false` provider errors; not 504, not a crash."""
    return isinstance(exc, RelayError) and exc.extra.get("accepted", False) is not None
