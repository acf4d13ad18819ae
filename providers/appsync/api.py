"""The Event API's HTTP endpoint: `POST /event`, one channel and at most 5 events a call, signed
with SigV4 (service `appsync`) or carrying an API key, over one pooled client.

https://docs.aws.amazon.com/appsync/latest/eventapi/publish-http.html documents the request; the
answer lists each event as `successful` or `failed` by its index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack
from urllib.parse import urlsplit

import orjson

from core.errors import ProviderError
from providers.outbound.client import Hooks, Outbound
from providers.outbound.verdict import Classifier, Verdict, retry_after

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    import httpx

    from providers.appsync.settings import AppSyncSettings
    from providers.outbound.sigv4 import Signer

PATH = "/event"
MAX_REASON_CHARS = 200


class AppSyncVerdicts(Classifier):
    """Retries what surely was not delivered (unreachable, throttled, 5xx); a publish that may
    have arrived is never sent again: AppSync drops no repeat, so subscribers would get it twice."""

    name = "appsync"
    item = "event"

    def answer(self, response: httpx.Response) -> Verdict:
        """2xx with no failed event delivered; 429 limited; other 4xx and failed events refused."""
        status = response.status_code
        reason = _reason(response)
        if status < 300:
            failed = _failed(response)
            if failed is None:
                return Verdict.delivered()
            return Verdict.refused(
                ProviderError(f"appsync refused an event: {failed}", provider_status=status)
            )
        if status == 429:
            return Verdict.limited(f"throttled (429): {reason}", retry_after(response))
        if status < 500:
            return Verdict.refused(
                ProviderError(
                    f"appsync refused the call ({status}): {reason}", provider_status=status
                )
            )
        return Verdict.failed(f"failed ({status}): {reason}")


def _reason(response: httpx.Response) -> str:
    return response.text[:MAX_REASON_CHARS].strip()


def _failed(response: httpx.Response) -> str | None:
    """The first failed event's reason, or None when none failed."""
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        return None
    failed = body.get("failed") if isinstance(body, dict) else None
    if not isinstance(failed, list) or not failed:
        return None
    first = failed[0] if isinstance(failed[0], dict) else {}
    return str(first.get("message") or first.get("code") or "no reason given")[:MAX_REASON_CHARS]


class AppSyncEvents:
    """Publishes to one Event API."""

    def __init__(
        self,
        settings: AppSyncSettings,
        base_url: str,
        *,
        signer: Signer | None,
        **hooks: Unpack[Hooks],
    ) -> None:
        self._api_key = settings.api_key
        self._signer = signer
        self._host = urlsplit(base_url).netloc
        self._outbound = Outbound(
            AppSyncVerdicts(), settings.retry, base_url=base_url, max_connections=16, **hooks
        )

    async def publish(self, channel_path: str, events: Sequence[str]) -> list[Any]:
        """POST one call; return AppSync's `successful` entries."""
        body = orjson.dumps({"channel": channel_path, "events": list(events)})

        def attempt(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
            # Signed afresh each attempt: the signature carries the time.
            return http.post(PATH, content=body, headers=self._headers(body))

        response = await self._outbound.send(attempt, call=f"POST {PATH}")
        found = orjson.loads(response.content) if response.content else {}
        successful = found.get("successful") if isinstance(found, dict) else None
        return successful if isinstance(successful, list) else []

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key.get_secret_value()
            return headers
        signed = (
            {} if self._signer is None else self._signer.headers("POST", self._host, PATH, body)
        )
        if not signed:
            raise ProviderError(
                "appsync: no AWS credentials to sign the publish with (give the function a role, "
                "or set APPSYNC_API_KEY)"
            )
        return {**headers, **signed}

    async def aclose(self) -> None:
        """Close the pool."""
        await self._outbound.aclose()
