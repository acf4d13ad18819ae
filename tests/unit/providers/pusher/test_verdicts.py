"""PusherVerdicts: what the retry loop may send to Pusher again. Pusher keeps duplicates, so
only what surely was not delivered is retried; a request that may have arrived never is."""

from __future__ import annotations

import httpx
import pytest

from core.errors import ProviderError
from providers.outbound.verdict import Kind
from providers.pusher.api import MAX_REASON_CHARS, PusherVerdicts

JUDGE = PusherVerdicts()


def test_pusher_is_not_trusted_to_drop_a_duplicate() -> None:
    assert PusherVerdicts.deduplicates is False
    assert (PusherVerdicts.name, PusherVerdicts.item) == ("pusher", "event")


@pytest.mark.parametrize("status", [200, 202, 204])
def test_2xx_is_delivered(status: int) -> None:
    assert JUDGE.classify(httpx.Response(status)).kind is Kind.DELIVERED


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 413, 429])
def test_any_other_answer_below_500_is_a_final_refusal_with_pushers_reason(status: int) -> None:
    verdict = JUDGE.classify(httpx.Response(status, text=" Invalid channel name \n"))
    assert verdict.kind is Kind.REFUSED
    error = verdict.error
    assert type(error) is ProviderError
    assert error.detail == f"pusher refused the call ({status}): Invalid channel name"
    assert error.retryable is False
    assert error.extra["provider_status"] == status


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"error": "The auth signature is invalid.", "code": 401}, 401),
        ({"error": "The auth signature is invalid."}, 400),
        ({"error": "x", "code": 200}, 400),
    ],
)
def test_soketis_200_with_an_error_is_a_refusal(body: dict[str, object], status: int) -> None:
    # soketi answers a bad signature with 200 and the error in the body: not delivered.
    verdict = JUDGE.classify(httpx.Response(200, json=body))
    assert verdict.kind is Kind.REFUSED
    assert verdict.error is not None
    assert verdict.error.detail == f"pusher refused the call ({status}): {body['error']}"
    assert verdict.error.extra["provider_status"] == status


@pytest.mark.parametrize("body", [{}, {"channels": {}}, [], {"occupied": False}])
def test_2xx_bodies_without_an_error_are_delivered(body: object) -> None:
    assert JUDGE.classify(httpx.Response(200, json=body)).kind is Kind.DELIVERED


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_failed_and_may_pass(status: int) -> None:
    verdict = JUDGE.classify(httpx.Response(status, text="x" * 1000))
    assert verdict.kind is Kind.FAILED
    assert verdict.failure == f"failed ({status}): " + "x" * MAX_REASON_CHARS
    assert verdict.error is None


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_a_request_that_never_left_is_unreachable(error: type[httpx.TransportError]) -> None:
    assert JUDGE.classify(error("x")).kind is Kind.UNREACHABLE


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.RemoteProtocolError]
)
def test_a_request_sent_and_not_answered_may_be_delivered(
    error: type[httpx.TransportError],
) -> None:
    verdict = JUDGE.classify(error("x"))
    assert verdict.kind is Kind.UNANSWERED
    assert verdict.failure == f"did not answer ({error.__name__})"
