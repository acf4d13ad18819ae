"""What every provider's HTTP client shares: one pooled client, created on first use and reused
across warm Lambda invocations, and full-jitter exponential backoff between attempts."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import httpx

from core.errors import ProviderUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


class Outbound:
    """A provider's connection pool and retry pacing; subclasses make the calls."""

    backoff_base_seconds = 0.05
    backoff_cap_seconds = 1.0

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float,
        max_connections: int,
        http: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._max_connections = max_connections
        self._http = http
        self._owns_http = http is None
        self._sleep = sleep
        self._jitter = jitter
        self._closed = False

    @property
    def http(self) -> httpx.AsyncClient:
        """The pooled client; refused once closed, so no call outlives shutdown."""
        if self._closed:
            raise ProviderUnavailable("the relay is shutting down")
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self._base_url,
                timeout=self._timeout,
                limits=httpx.Limits(
                    max_connections=self._max_connections,
                    max_keepalive_connections=self._max_connections,
                ),
            )
        return self._http

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        # Full jitter on an exponential ceiling: retries from many processes do not line up.
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * (1 << (attempt - 1)))
        return ceiling * self._jitter()

    async def pause(self, attempt: int) -> None:
        """Wait out the backoff after failed attempt `attempt`."""
        await self._sleep(self.backoff(attempt))

    async def aclose(self) -> None:
        """Close the pool if this object created it."""
        self._closed = True
        if self._http is not None and self._owns_http:
            await self._http.aclose()
