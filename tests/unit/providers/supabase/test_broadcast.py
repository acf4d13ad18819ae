"""BroadcastVerdicts: what the retry loop may send to Realtime again. A maybe-delivered broadcast
is resent (clients drop the duplicate by its meta.id); a dropped kept-alive connection counts as
never sent; every 4xx is final, a 429 telling the caller to try later."""

from __future__ import annotations

import httpx
import pytest

from core.errors import ProviderError
from providers.outbound.verdict import Kind
from providers.supabase.broadcast import BroadcastVerdicts

JUDGE = BroadcastVerdicts()


def test_a_maybe_delivered_broadcast_may_be_resent() -> None:
    assert BroadcastVerdicts.deduplicates is True
    assert (BroadcastVerdicts.name, BroadcastVerdicts.item) == ("supabase", "broadcast")


@pytest.mark.parametrize("status", [200, 202])
def test_2xx_is_delivered(status: int) -> None:
    assert JUDGE.classify(httpx.Response(status)).kind is Kind.DELIVERED


@pytest.mark.parametrize(
    ("status", "retryable"), [(301, False), (400, False), (401, False), (422, False), (429, True)]
)
def test_below_500_is_final(status: int, retryable: bool) -> None:
    verdict = JUDGE.classify(httpx.Response(status, json={"message": "Too many messages"}))
    assert verdict.kind is Kind.REFUSED
    error = verdict.error
    assert type(error) is ProviderError
    assert error.detail == f"supabase refused the broadcast ({status}): Too many messages"
    assert error.retryable is retryable
    assert error.extra["provider_status"] == status


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"json": {"error": "boom"}}, "boom"),
        (
            {"json": {"errors": {"messages": ["can't be blank"]}}},
            '{"messages":["can\'t be blank"]}',
        ),
        ({"text": " plain words "}, "plain words"),
        ({}, "Service Unavailable"),
    ],
)
def test_5xx_failed_in_realtimes_own_words(body: dict[str, object], reason: str) -> None:
    verdict = JUDGE.classify(httpx.Response(503, **body))  # type: ignore[arg-type]
    assert verdict.kind is Kind.FAILED
    assert verdict.failure == f"broadcast failed (503): {reason}"


def test_a_dropped_connection_was_never_processed() -> None:
    verdict = JUDGE.classify(httpx.RemoteProtocolError("Server disconnected"))
    assert verdict.kind is Kind.UNREACHABLE
    assert verdict.failure == "connection dropped (RemoteProtocolError)"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx.ConnectError, Kind.UNREACHABLE),
        (httpx.PoolTimeout, Kind.UNREACHABLE),
        (httpx.ReadTimeout, Kind.UNANSWERED),
        (httpx.ReadError, Kind.UNANSWERED),
    ],
)
def test_other_transport_errors_as_for_every_provider(
    error: type[httpx.TransportError], kind: Kind
) -> None:
    assert JUDGE.classify(error("x")).kind is kind
