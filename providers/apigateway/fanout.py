"""Posting one frame to many connections: a bounded pool of workers, retries, and a report.

Each worker takes the next connection and posts to it, so at most `concurrency` posts are in
flight and none waits behind a slow one. A post that fails in a way that may pass (throttling,
5xx, a socket that broke before sending) is retried with full-jitter backoff; a 410/GoneException
is not retried: the connection is reported gone, and the provider deletes it. Everything else
that failed is reported with its error code.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from typing import TYPE_CHECKING

from msgspec import Struct, field

from providers.outbound.policy import backoff

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from providers.apigateway.management import Answer, ManagementApi

log = logging.getLogger(__name__)


class Report(Struct):
    """What happened to each post of a fan-out."""

    sent: int = 0
    gone: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # connection id -> error code

    def summary(self) -> str:
        """One line for the logs: counts and error codes, never connection ids or payloads."""
        codes = Counter(self.failed.values())
        detail = ", ".join(f"{code} x{count}" for code, count in sorted(codes.items()))
        counts = f"sent {self.sent}, gone {len(self.gone)}, failed {len(self.failed)}"
        return f"{counts} {detail}".strip()


class Fanout:
    """Posts to connections through the management API, at most `concurrency` at a time."""

    def __init__(
        self,
        api: ManagementApi,
        *,
        concurrency: int = 32,
        attempts: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.api = api
        self.concurrency = concurrency
        self.attempts = attempts
        self._sleep = sleep
        self._jitter = jitter

    async def send(self, connection_ids: Iterable[str], data: bytes) -> Report:
        """Post `data` to every connection; return who got it, who is gone, who failed."""
        targets = list(dict.fromkeys(connection_ids))
        report = Report()
        pending = iter(targets)

        async def worker() -> None:
            for connection_id in pending:
                answer = await self._post(connection_id, data)
                if answer.ok:
                    report.sent += 1
                elif answer.gone:
                    report.gone.append(connection_id)
                else:
                    report.failed[connection_id] = answer.code or str(answer.status)

        workers = min(self.concurrency, len(targets))
        await asyncio.gather(*(worker() for _ in range(workers)))
        if report.failed:
            log.warning("fan-out: %s", report.summary())
        return report

    async def _post(self, connection_id: str, data: bytes) -> Answer:
        attempt = 0
        while True:
            answer = await self.api.post(connection_id, data)
            attempt += 1
            if answer.ok or not answer.retryable or attempt >= self.attempts:
                return answer
            await self._sleep(backoff(attempt, self._jitter()))
