"""Pusher's HTTP API over one pooled, non-blocking client, signed per call, retried with care.

The official `pusher` SDK is not used here: it blocks the event loop (requests), sizes payloads with
`sys.getsizeof`, and lets 30 KB through where the service takes 10 KB. It stays the tests' oracle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

import orjson

from core.errors import ProviderError
from providers.outbound.client import Hooks, Outbound
from providers.outbound.verdict import Classifier, Verdict
from providers.pusherproto import signing

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import httpx

    from providers.pusher.settings import PusherSettings

MAX_REASON_CHARS = 200


class PusherVerdicts(Classifier):
    """Retries what surely was not delivered (connection failures, connect timeouts, 5xx) and
    never what may have been: Pusher has no idempotency, so a resend could deliver twice."""

    name = "pusher"
    item = "event"

    def answer(self, response: httpx.Response) -> Verdict:
        """2xx delivered; any other status below 500 a final refusal; 5xx failed.

        soketi answers a request it refuses (a bad signature) with status 200 and `{"error",
        "code"}` in the body: a refusal too, or a publish it dropped would be reported delivered.
        Pusher's own answers to a call never carry an `error` member."""
        status = response.status_code
        if status < 300:
            refused = _error_in(response)
            if refused is None:
                return Verdict.delivered()
            code, reason = refused
            return Verdict.refused(
                ProviderError(f"pusher refused the call ({code}): {reason}", provider_status=code)
            )
        reason = response.text[:MAX_REASON_CHARS].strip()
        if status < 500:
            return Verdict.refused(
                ProviderError(
                    f"pusher refused the call ({status}): {reason}", provider_status=status
                )
            )
        return Verdict.failed(f"failed ({status}): {reason}")


def _error_in(response: httpx.Response) -> tuple[int, str] | None:
    """(code, reason) of an `{"error", "code"}` body, or None."""
    if not response.content.startswith(b"{") or b'"error"' not in response.content:
        return None
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or "error" not in body:
        return None
    code = body.get("code")
    status = code if isinstance(code, int) and 400 <= code < 500 else 400
    return status, str(body["error"])[:MAX_REASON_CHARS].strip()


class PusherApi:
    """Signed calls to `/apps/{app_id}/...`."""

    def __init__(
        self,
        settings: PusherSettings,
        **hooks: Unpack[Hooks],
    ) -> None:
        self.settings = settings
        self._prefix = f"/apps/{settings.app_id}"
        self._outbound = Outbound(
            PusherVerdicts(),
            settings.retry,
            base_url=settings.base_url,
            max_connections=settings.max_in_flight,
            **hooks,
        )

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST a JSON body to `/apps/{app_id}{path}`."""
        return await self._call("POST", path, orjson.dumps(body), {})

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET `/apps/{app_id}{path}` with query parameters."""
        return await self._call("GET", path, b"", params or {})

    async def _call(self, method: str, path: str, body: bytes, params: dict[str, str]) -> Any:
        full_path = self._prefix + path
        key, secret = self.settings.key, self.settings.secret.get_secret_value()

        def attempt(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
            # Signed afresh each attempt: the signature carries the time.
            signed = signing.sign_request(key, secret, method, full_path, body=body, params=params)
            return http.request(method, full_path, params=signed, content=body or None)

        response = await self._outbound.send(attempt, call=f"{method} {full_path}")
        return response.json() if response.content else {}

    async def aclose(self) -> None:
        """Close the pool."""
        await self._outbound.aclose()
