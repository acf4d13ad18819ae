"""What AppSync's answers mean for a publish: delivered, retried, or refused."""

from __future__ import annotations

import httpx
import pytest

from core.errors import ProviderError
from providers.appsync.api import AppSyncVerdicts
from providers.outbound.verdict import Kind


def _answer(status: int, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


def test_every_event_successful_is_delivered() -> None:
    body = b'{"failed":[],"successful":[{"identifier":"a1","index":0}]}'
    assert AppSyncVerdicts().answer(_answer(200, body)).kind is Kind.DELIVERED


def test_a_failed_event_in_a_2xx_answer_is_a_refusal() -> None:
    body = (
        b'{"failed":[{"identifier":"a1","index":0,"code":400,"message":"too big"}],"successful":[]}'
    )
    verdict = AppSyncVerdicts().answer(_answer(200, body))
    assert verdict.kind is Kind.REFUSED
    assert isinstance(verdict.error, ProviderError)
    assert "too big" in verdict.error.detail


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_a_client_error_is_a_final_refusal(status: int) -> None:
    verdict = AppSyncVerdicts().answer(_answer(status, b'{"errors":[{"errorType":"x"}]}'))
    assert verdict.kind is Kind.REFUSED
    assert verdict.error is not None
    assert verdict.error.retryable is False


def test_throttling_is_retried_after_its_retry_after() -> None:
    verdict = AppSyncVerdicts().answer(_answer(429, b"slow down", **{"retry-after": "2"}))
    assert verdict.kind is Kind.LIMITED
    assert verdict.retry_after == 2.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_may_pass(status: int) -> None:
    assert AppSyncVerdicts().answer(_answer(status)).kind is Kind.FAILED


def test_appsync_drops_no_repeat_so_an_unanswered_call_is_never_resent() -> None:
    assert AppSyncVerdicts.deduplicates is False
