"""Ably's REST API over one pooled, non-blocking httpx client, retried without duplicating.

The official `ably` SDK (v3, async, httpx underneath) is not used at run time: it has no batch
publish call (only the generic `request`), it imports websockets, msgpack and pyee even for REST
(about twice httpx's import time, measured with `python -X importtime`), and its retries go to
fallback hosts on 5xx without waiting on a 429. It stays the tests' oracle for TokenRequests.

What the REST API reference (docs/api/rest-api) specifies and this module relies on:
    POST /channels/{id}/messages    one message {name, data, id}; 201 {channel, messageId}
    POST /messages                  batch: [{channels, messages}, ...]; 200 [{channel, messageId}]
                                    or 400 code 40020 with a batchResponse for a partial failure
    GET  /channels/{id}/messages    history, newest first with direction=backwards, limit <= 1000
    GET  /channels/{id}/presence    the present members, limit <= 1000
    Authorization: Basic base64(key); X-Ably-Version pins the response shapes above;
    errors are {"error": {code, statusCode, message}} (also X-Ably-ErrorCode, -ErrorMessage).

Retries (providers/outbound): timeouts, transport errors, 5xx and 429 (waiting for its
Retry-After when given) are tried again with the very same body, so message ids repeat and Ably
discards what it already has. When every attempt failed and one of them was sent but never
answered (a read timeout, a reset), Ably may have the message: that is ProviderTimeout
(`accepted: null`), not "unavailable".
"""

from __future__ import annotations

import base64
import contextlib
from typing import TYPE_CHECKING, Any, NamedTuple, Unpack
from urllib.parse import quote

import orjson

from core.errors import ProviderError
from providers.outbound.client import Hooks, Outbound
from providers.outbound.verdict import Classifier, Verdict, retry_after

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import httpx

    from providers.ably.settings import AblySettings

API_VERSION = "1.2"  # the version whose batch response shapes the reference documents
MAX_REASON_CHARS = 200
BATCH_PARTIAL_FAILURE = 40020
TOO_MANY_REQUESTS = 429


class AblyFailure(NamedTuple):
    """Ably's error for one call or one batch item."""

    status: int
    code: int | None
    message: str

    @property
    def retryable(self) -> bool:
        """Rate limits and server errors may pass; anything else will fail the same way again."""
        return self.status == TOO_MANY_REQUESTS or self.status >= 500

    def describe(self) -> str:
        """`status, code N: message`, short and secret-free (Ably never echoes the key)."""
        code = f", code {self.code}" if self.code is not None else ""
        return f"{self.status}{code}: {self.message[:MAX_REASON_CHARS]}"


class AblyVerdicts(Classifier):
    """Everything that may pass is retried, a maybe-delivered request too: the resend carries the
    same message ids, and Ably drops the ones it already has."""

    name = "ably"
    item = "message"
    deduplicates = True

    def answer(self, response: httpx.Response) -> Verdict:
        """2xx delivered; 429 limited (Retry-After); 5xx failed; any other error final. A partial
        batch failure is judged by its items."""
        if response.status_code < 300:
            return Verdict.delivered()
        error = _failure(response)
        if error.code == BATCH_PARTIAL_FAILURE:
            error = _batch_failure(response) or error
        if not error.retryable:
            request = response.request
            path = request.url.raw_path.decode("ascii").partition("?")[0]
            return Verdict.refused(
                ProviderError(
                    f"ably refused {request.method} {path} ({error.describe()})",
                    provider_status=error.status,
                    provider_code=error.code,
                )
            )
        failure = f"failed ({error.describe()})"
        if error.status == TOO_MANY_REQUESTS:
            return Verdict.limited(failure, retry_after(response))
        return Verdict.failed(failure)


class AblyRest:
    """The REST calls the provider makes, with auth, retries and error mapping."""

    def __init__(
        self,
        settings: AblySettings,
        **hooks: Unpack[Hooks],
    ) -> None:
        basic = base64.b64encode(settings.api_key.get_secret_value().encode()).decode("ascii")
        self._headers = {
            "Authorization": f"Basic {basic}",
            "X-Ably-Version": API_VERSION,
            "Accept": "application/json",
        }
        self._outbound = Outbound(
            AblyVerdicts(),
            settings.retry,
            base_url=settings.base_url,
            max_connections=settings.max_in_flight,
            **hooks,
        )

    async def publish(self, channel: str, message: dict[str, Any]) -> Any:
        """Publish one message on one channel."""
        return await self._call("POST", f"/channels/{_segment(channel)}/messages", body=message)

    async def publish_batch(self, specs: list[dict[str, Any]]) -> Any:
        """Publish with Ably's batch request; each spec is published independently."""
        return await self._call("POST", "/messages", body=specs)

    async def history(self, channel: str, *, limit: int) -> list[Any]:
        """The newest `limit` messages of a channel, newest first."""
        params = {"limit": str(limit), "direction": "backwards"}
        found = await self._call("GET", f"/channels/{_segment(channel)}/messages", params=params)
        return found if isinstance(found, list) else []

    async def presence(self, channel: str, *, limit: int) -> list[Any]:
        """The members present on a channel right now."""
        params = {"limit": str(limit)}
        found = await self._call("GET", f"/channels/{_segment(channel)}/presence", params=params)
        return found if isinstance(found, list) else []

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        content = None if body is None else orjson.dumps(body)  # once: retries send it as is
        headers = dict(self._headers)
        if content is not None:
            headers["Content-Type"] = "application/json"

        def attempt(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
            return http.request(method, path, content=content, params=params, headers=headers)

        response = await self._outbound.send(attempt, call=f"{method} {path}")
        return orjson.loads(response.content) if response.content else None

    async def aclose(self) -> None:
        """Close the pool."""
        await self._outbound.aclose()


def _segment(channel: str) -> str:
    return quote(channel, safe="")


def _failure(response: httpx.Response) -> AblyFailure:
    """Ably's ErrorInfo from the body, or from the X-Ably-Error* headers when there is none."""
    error: object = None
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
        error = orjson.loads(response.content).get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message") or "")
    else:
        raw_code = response.headers.get("x-ably-errorcode", "")
        code = int(raw_code) if raw_code.isdigit() else None
        message = response.headers.get("x-ably-errormessage", response.reason_phrase)
    return AblyFailure(response.status_code, code if isinstance(code, int) else None, message)


def _batch_failure(response: httpx.Response) -> AblyFailure | None:
    """For a partial batch failure: the first item that will not pass on a retry, else a
    retryable summary (a retry resends every spec; ids make the delivered ones no-ops)."""
    try:
        items = orjson.loads(response.content).get("batchResponse")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(items, list):
        return None
    failed: list[AblyFailure] = []
    for item in items:
        error = item.get("error") if isinstance(item, dict) else None
        if isinstance(error, dict):
            status = error.get("statusCode")
            code = error.get("code")
            failed.append(
                AblyFailure(
                    status if isinstance(status, int) else 400,
                    code if isinstance(code, int) else None,
                    f"channel {item.get('channel')!r}: {error.get('message') or ''}",
                )
            )
    if not failed:
        return None
    final = next((f for f in failed if not f.retryable), None)
    if final is not None:
        return final
    worst = max(failed, key=lambda f: f.status)
    return AblyFailure(worst.status, worst.code, f"{len(failed)} of {len(items)} specs failed")
