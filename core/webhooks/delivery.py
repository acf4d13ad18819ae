"""The POST of a batch to each webhook URL, retried with backoff on timeouts, 429 and 5xx.

Other 4xx answers are final: the backend refused the request (its signature check, its routing),
and the same request would be refused again. Redirects are not followed. A log line names a URL
by its scheme, host and path only (a query or user info may hold a token), never the body or a
signature.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from msgspec import Struct

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from core.provider import ChannelEvent
    from core.webhooks.config import WebhookConfig

    Sign = Callable[[Sequence[ChannelEvent], float], tuple[bytes, dict[str, str]]]

log = logging.getLogger(__name__)
USER_AGENT = "realtime-relay-webhooks"


class Answer(Struct, frozen=True):
    """What one URL answered to a batch: the last status (None: no answer) and how it went."""

    url: str
    status: int | None
    detail: str
    attempts: int = 1

    @property
    def delivered(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """No answer, 408, 429 or 5xx: the same request may succeed later."""
        return self.status is None or self.status in (408, 429) or self.status >= 500


def safe_url(url: str) -> str:
    """The URL as logs may show it: scheme, host, port and path."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Sender:
    """One pooled client for every URL; `sign` makes a batch's body and headers per attempt."""

    def __init__(
        self,
        config: WebhookConfig,
        sign: Sign,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._sign = sign
        self._client = client
        self._sleep = sleep
        self._clock = clock

    async def send(self, events: Sequence[ChannelEvent]) -> list[Answer]:
        """Deliver to every URL at once, each retried until it answers, refuses, or the
        attempts run out."""
        return list(await asyncio.gather(*(self._retried(url, events) for url in self.config.urls)))

    async def attempt(self, url: str, events: Sequence[ChannelEvent]) -> Answer:
        """One POST of the batch to one URL."""
        body, headers = self._sign(events, self._clock())
        headers["User-Agent"] = USER_AGENT
        try:
            response = await self._http().post(
                url, content=body, headers=headers, timeout=self.config.timeout_seconds
            )
        except httpx.TimeoutException:
            return Answer(url, None, "timed out")
        except httpx.HTTPError as exc:
            return Answer(url, None, type(exc).__name__)
        return Answer(url, response.status_code, response.reason_phrase or "")

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _retried(self, url: str, events: Sequence[ChannelEvent]) -> Answer:
        config = self.config
        answer = Answer(url, None, "not sent", 0)
        for attempt in range(1, config.attempts + 1):
            answer = await self.attempt(url, events)
            answer = Answer(url, answer.status, answer.detail, attempt)
            if answer.delivered or not answer.retryable:
                break
            if attempt < config.attempts:
                wait = min(config.backoff_max_seconds, config.backoff_seconds * 2 ** (attempt - 1))
                await self._sleep(wait * (0.5 + random.random() / 2))  # noqa: S311 - jitter
        if not answer.delivered:
            log.warning(
                "webhook to %s not delivered after %d attempt(s): %s %s (%d events)",
                safe_url(url),
                answer.attempts,
                answer.status or "",
                answer.detail,
                len(events),
            )
        return answer

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client
