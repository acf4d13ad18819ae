"""Verdicts: the transport errors every provider shares, Retry-After, and what "surely not
delivered" covers."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from core.errors import ProviderError
from providers.outbound.verdict import Classifier, Kind, Verdict, retry_after


class Plain(Classifier):
    name = "plain"
    item = "thing"

    def answer(self, response: httpx.Response) -> Verdict:
        return Verdict.delivered() if response.is_success else Verdict.failed("no")


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_an_error_before_sending_is_unreachable(error: type[httpx.TransportError]) -> None:
    verdict = Plain().classify(error("x"))
    assert verdict.kind is Kind.UNREACHABLE
    assert verdict.failure == f"unreachable ({error.__name__})"


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout,
        httpx.WriteTimeout,
        httpx.ReadError,
        httpx.WriteError,
        httpx.RemoteProtocolError,
        httpx.LocalProtocolError,
    ],
)
def test_an_error_after_sending_began_is_unanswered(error: type[httpx.TransportError]) -> None:
    verdict = Plain().classify(error("x"))
    assert verdict.kind is Kind.UNANSWERED
    assert verdict.failure == f"did not answer ({error.__name__})"


def test_answers_go_to_the_provider() -> None:
    assert Plain().classify(httpx.Response(200)).kind is Kind.DELIVERED
    assert Plain().classify(httpx.Response(500)).kind is Kind.FAILED


def test_a_classifier_must_judge_answers() -> None:
    class Half(Classifier):
        name = "half"
        item = "thing"

    with pytest.raises(NotImplementedError):
        Half().classify(httpx.Response(200))


def test_a_refusal_carries_its_error() -> None:
    refused = Verdict.refused(ProviderError("refused (400): no"))
    assert refused.kind is Kind.REFUSED
    assert refused.failure == "refused (400): no"
    assert refused.error is not None


def _answer(value: str | None) -> httpx.Response:
    return httpx.Response(429, headers={} if value is None else {"Retry-After": value})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-4", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: at once
    ],
)
def test_retry_after_reads_seconds_and_dates(value: str | None, seconds: float | None) -> None:
    assert retry_after(_answer(value)) == seconds


def test_retry_after_reads_a_date_in_the_future() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    found = retry_after(_answer(later))
    assert found is not None
    assert 28 <= found <= 30
