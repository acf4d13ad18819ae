"""Every error is RFC 9457 problem+json with a stable type and no secret in it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import HTTPException

from core.errors import (
    Forbidden,
    NotSupported,
    ProviderError,
    ProviderUnavailable,
    RelayError,
    TooManyItems,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

PROBLEM = "urn:realtime-relay:problem:"
FIELDS = {"type", "title", "status", "detail", "instance"}
LEAK = "db-password=hunter2-0xDEADBEEF"


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= FIELDS
    assert body["type"] == PROBLEM + slug
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    return body


@pytest.fixture
async def lenient_http(relay_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Like `http`, but an exception the app re-raises after answering does not fail the call."""

    @relay_app.get("/test-only/boom")
    async def boom() -> None:
        raise RuntimeError(LEAK)

    @relay_app.get("/test-only/relay-error/{kind}")
    async def relay_error(kind: str) -> None:
        errors: dict[str, RelayError] = {
            "forbidden": Forbidden("nope", channel="private-x"),
            "too-many": TooManyItems("too many", limit=3),
            "unsupported": NotSupported("cannot"),
            "provider": ProviderError("upstream said no", retryable=True),
            "unavailable": ProviderUnavailable("down", retry_after=7),
        }
        raise errors[kind]

    @relay_app.get("/test-only/http-error")
    async def http_error() -> None:
        raise HTTPException(418, "short and stout", headers={"X-Teapot": "yes"})

    transport = httpx.ASGITransport(app=relay_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        yield client


async def test_unknown_route_is_a_404_problem(http: httpx.AsyncClient) -> None:
    response = await http.get("/no/such/route")
    body = _problem(response, 404, "not-found")
    assert body["instance"] == "/no/such/route"


async def test_unknown_route_query_is_not_echoed(http: httpx.AsyncClient) -> None:
    response = await http.get("/no/such/route", params={"token": LEAK})
    body = _problem(response, 404, "not-found")
    assert body["instance"] == "/no/such/route"
    assert LEAK not in response.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/events", "POST"),
        ("DELETE", "/auth/channel", "POST"),
        ("POST", "/health", "GET"),
    ],
)
async def test_wrong_method_is_a_405_problem(
    http: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await http.request(method, path)
    body = _problem(response, 405, "method-not-allowed")
    assert body["instance"] == path
    assert allow in response.headers["allow"]


async def test_unexpected_exception_is_a_500_problem_without_its_text(
    lenient_http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="app.problems"):
        response = await lenient_http.get("/test-only/boom")
    body = _problem(response, 500, "internal")
    assert body["instance"] == "/test-only/boom"
    assert LEAK not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    # The operator, not the client, gets the details.
    assert any(r.exc_info and LEAK in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize(
    ("kind", "status", "slug", "extra"),
    [
        ("forbidden", 403, "forbidden", {"channel": "private-x"}),
        ("too-many", 400, "too-many-items", {"limit": 3}),
        ("unsupported", 501, "not-supported", {}),
        ("provider", 502, "provider-error", {"retryable": True}),
        ("unavailable", 503, "provider-unavailable", {"retryable": True}),
    ],
)
async def test_relay_errors_become_problems_with_their_extras(
    lenient_http: httpx.AsyncClient, kind: str, status: int, slug: str, extra: dict[str, Any]
) -> None:
    response = await lenient_http.get(f"/test-only/relay-error/{kind}")
    body = _problem(response, status, slug)
    assert body["instance"] == f"/test-only/relay-error/{kind}"
    for key, value in extra.items():
        assert body[key] == value


async def test_provider_unavailable_carries_retry_after(lenient_http: httpx.AsyncClient) -> None:
    response = await lenient_http.get("/test-only/relay-error/unavailable")
    _problem(response, 503, "provider-unavailable")
    assert response.headers["retry-after"] == "7"


async def test_http_exceptions_keep_status_and_headers(lenient_http: httpx.AsyncClient) -> None:
    response = await lenient_http.get("/test-only/http-error")
    body = _problem(response, 418, "http-error")
    assert body["detail"] == "short and stout"
    assert response.headers["x-teapot"] == "yes"


async def test_validation_problem_shape(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/events", json={"name": 5, "data": LEAK}, headers={"X-API-Key": "x" * 20}
    )
    body = _problem(response, 422, "invalid-request")
    assert body["instance"] == "/v1/events"
    assert all(set(e) == {"loc", "msg"} for e in body["errors"])
    assert LEAK not in response.text


async def test_oversized_body_problem_names_the_path(
    http: httpx.AsyncClient, relay_app: FastAPI
) -> None:
    limit = relay_app.state.relay.settings.max_body_bytes
    response = await http.post(
        "/auth/user",
        content=b"socket_id=1.2&x=" + b"y" * limit,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = _problem(response, 413, "payload-too-large")
    assert body["instance"] == "/auth/user"
    assert str(limit) in body["detail"]
