"""Pusher's HTTP API over one pooled, non-blocking client, signed per call, retried with care.

The official `pusher` SDK is not used here: it blocks the event loop (requests), sizes payloads with
`sys.getsizeof`, and lets 30 KB through where the service takes 10 KB. It stays the tests' oracle.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from core.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from providers.outbound import Outbound
from providers.pusherproto import signing

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from providers.pusher.settings import PusherSettings

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0
MAX_REASON_CHARS = 200


class PusherApi(Outbound):
    """Signed calls to `/apps/{app_id}/...`; retries what surely was not delivered (connection
    failures, connect timeouts, 5xx) and never what may have been (a read timeout)."""

    backoff_base_seconds = BACKOFF_BASE_SECONDS
    backoff_cap_seconds = BACKOFF_CAP_SECONDS

    def __init__(
        self,
        settings: PusherSettings,
        *,
        http: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(
            base_url=settings.base_url,
            timeout=settings.timeout_seconds,
            max_connections=settings.max_in_flight,
            http=http,
            sleep=sleep,
            jitter=jitter,
        )
        self.settings = settings
        self._prefix = f"/apps/{settings.app_id}"

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST a JSON body to `/apps/{app_id}{path}`."""
        return await self._call("POST", path, orjson.dumps(body), {})

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET `/apps/{app_id}{path}` with query parameters."""
        return await self._call("GET", path, b"", params or {})

    async def _call(self, method: str, path: str, body: bytes, params: dict[str, str]) -> Any:
        full_path = self._prefix + path
        settings = self.settings
        failure = ""
        unreachable = False
        for attempt in range(1, settings.max_attempts + 1):
            signed = signing.sign_request(
                settings.key,
                settings.secret.get_secret_value(),
                method,
                full_path,
                body=body,
                params=params,
            )
            try:
                response = await self.http.request(
                    method, full_path, params=signed, content=body or None
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Never sent: safe to try again.
                failure, unreachable = f"unreachable ({exc.__class__.__name__})", True
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                # Sent, but no answer (timed out, reset, closed): Pusher may have it and has no
                # idempotency, so a retry could deliver twice. (httpcore itself already checks a
                # kept-alive connection before reusing it, so a stale one is not this case.)
                raise ProviderTimeout(
                    f"pusher did not answer ({exc.__class__.__name__}); the event may or may "
                    "not have been delivered"
                ) from exc
            else:
                if response.status_code < 300:
                    return response.json() if response.content else {}
                reason = response.text[:MAX_REASON_CHARS].strip()
                if response.status_code < 500:
                    raise ProviderError(
                        f"pusher refused the call ({response.status_code}): {reason}",
                        provider_status=response.status_code,
                    )
                failure, unreachable = f"failed ({response.status_code}): {reason}", False
            log.warning("pusher %s %s attempt %d %s", method, full_path, attempt, failure)
            if attempt < settings.max_attempts:
                await self.pause(attempt)
        if unreachable:
            raise ProviderUnavailable(f"pusher {failure} after {settings.max_attempts} attempts")
        raise ProviderError(f"pusher {failure}", retryable=True)
