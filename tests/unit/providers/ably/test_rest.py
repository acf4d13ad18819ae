"""AblyVerdicts: what the retry loop may send to Ably again. Ably drops a message id it already
has, so everything that may pass is resent, a maybe-delivered request too; a 429 waits for its
Retry-After; Ably's ErrorInfo decides, item by item for a partial batch failure."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.errors import ProviderError
from providers.ably.rest import AblyVerdicts
from providers.outbound.verdict import Kind

JUDGE = AblyVerdicts()
PUBLISH = httpx.Request("POST", "https://rest.example:443/channels/a%3Ab/messages")


def answer(status: int, *, error: dict[str, Any] | None = None, **extra: Any) -> httpx.Response:
    body = extra.pop("json", {"error": error} if error is not None else None)
    return httpx.Response(status, json=body, request=PUBLISH, **extra)


def info(status: int, code: int, message: str = "no") -> dict[str, Any]:
    return {"code": code, "statusCode": status, "message": message}


def partial(*items: dict[str, Any]) -> httpx.Response:
    return answer(
        400,
        json={
            "error": info(400, 40020, "Batched response includes errors"),
            "batchResponse": items,
        },
    )


def test_a_maybe_delivered_request_is_resent_under_the_same_ids() -> None:
    assert AblyVerdicts.deduplicates is True
    assert (AblyVerdicts.name, AblyVerdicts.item) == ("ably", "message")
    assert JUDGE.classify(httpx.ReadTimeout("x")).kind is Kind.UNANSWERED
    assert JUDGE.classify(httpx.ConnectError("x")).kind is Kind.UNREACHABLE


@pytest.mark.parametrize("status", [200, 201])
def test_2xx_is_delivered(status: int) -> None:
    assert JUDGE.classify(answer(status, json={})).kind is Kind.DELIVERED


def test_a_refusal_names_the_call_and_ablys_error() -> None:
    verdict = JUDGE.classify(answer(401, error=info(401, 40101, "Invalid credentials")))
    assert verdict.kind is Kind.REFUSED
    error = verdict.error
    assert type(error) is ProviderError
    assert error.detail == (
        "ably refused POST /channels/a%3Ab/messages (401, code 40101: Invalid credentials)"
    )
    assert error.retryable is False
    assert (error.extra["provider_status"], error.extra["provider_code"]) == (401, 40101)


def test_the_query_stays_out_of_a_refusal() -> None:
    history = httpx.Request("GET", "https://rest.example/channels/a/messages?limit=2000")
    verdict = JUDGE.classify(httpx.Response(400, json={"error": info(400, 40003)}, request=history))
    assert verdict.error is not None
    assert verdict.error.detail.startswith("ably refused GET /channels/a/messages (400")


def test_without_a_json_body_the_error_headers_speak() -> None:
    headers = {"x-ably-errorcode": "40300", "x-ably-errormessage": "Forbidden here"}
    verdict = JUDGE.classify(answer(403, content=b"<html>", headers=headers))
    assert verdict.error is not None
    assert verdict.error.extra["provider_code"] == 40300
    assert "Forbidden here" in verdict.error.detail


@pytest.mark.parametrize(("retry_after", "hint"), [("3", 3.0), (None, None)])
def test_429_is_limited_with_its_retry_after(retry_after: str | None, hint: float | None) -> None:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    verdict = JUDGE.classify(answer(429, error=info(429, 42910, "Rate limit"), headers=headers))
    assert verdict.kind is Kind.LIMITED
    assert verdict.retry_after == hint
    assert verdict.failure == "failed (429, code 42910: Rate limit)"


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_failed_and_may_pass(status: int) -> None:
    verdict = JUDGE.classify(answer(status, error=info(status, 50000, "Internal error")))
    assert verdict.kind is Kind.FAILED
    assert verdict.retry_after is None


def test_a_partial_batch_failure_that_cannot_pass_is_final_and_names_the_channel() -> None:
    verdict = JUDGE.classify(
        partial(
            {"channel": "a", "messageId": "x:0"},
            {"channel": "b", "error": info(503, 50300)},
            {"channel": "c", "error": info(401, 40160, "not permitted")},
        )
    )
    assert verdict.error is not None
    assert verdict.error.extra["provider_code"] == 40160
    assert "channel 'c': not permitted" in verdict.error.detail


@pytest.mark.parametrize(("statuses", "kind"), [((503, 500), Kind.FAILED), ((429,), Kind.LIMITED)])
def test_a_partial_batch_failure_that_may_pass_is_resent_whole(
    statuses: tuple[int, ...], kind: Kind
) -> None:
    items = [{"channel": f"c{i}", "error": info(s, s * 100)} for i, s in enumerate(statuses)]
    verdict = JUDGE.classify(partial({"channel": "a", "messageId": "x:0"}, *items))
    assert verdict.kind is kind
    assert f"{len(items)} of {len(items) + 1} specs failed" in verdict.failure
