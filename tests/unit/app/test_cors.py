"""CORS in the relay's one middleware layer answers exactly as Starlette's CORSMiddleware would
with the relay's configuration: the same requests to both, the answers compared byte for byte
(status, every header in order, body)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import pytest
from starlette.middleware.cors import CORSMiddleware

from app.cors import EXPOSED_HEADERS, MAX_AGE, METHODS, REQUEST_HEADERS
from app.middleware import Front
from core.settings import Settings
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

LISTED = "https://app.example.com"
ORIGIN_SETTINGS = {"any": "*", "listed": f"{LISTED},https://admin.example.com"}
ORIGINS = [None, LISTED, "https://admin.example.com", "https://evil.example", "null", LISTED + "/"]
# What the app answers before CORS adds to it: no Vary, one, several.
ANSWERS: list[list[tuple[bytes, bytes]]] = [
    [(b"content-type", b"application/json"), (b"content-length", b"2")],
    [(b"content-type", b"text/plain"), (b"vary", b"Accept-Encoding")],
    [(b"vary", b"Accept"), (b"x-other", b"1"), (b"vary", b"Cookie")],
    [(b"access-control-allow-origin", b"https://stale.example")],
]


def reference(app: ASGIApp, origins: tuple[str, ...]) -> ASGIApp:
    """Starlette's middleware as app/main.py configured it before the layers were merged."""
    return CORSMiddleware(
        app,
        allow_origins=list(origins),
        allow_methods=list(METHODS),
        allow_headers=list(REQUEST_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        max_age=MAX_AGE,
    )


def merged(app: ASGIApp, settings: Settings) -> ASGIApp:
    return Front(app, settings=settings, host=app, direct={})


def answering(headers: list[tuple[bytes, bytes]]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def call(app: ASGIApp, method: str, headers: list[tuple[str, str]]) -> list[Message]:
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/v1/events",  # not origin-guarded: CORS alone decides
        "raw_path": b"/v1/events",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("10.0.0.1", 4000),
        "server": ("relay", 80),
    }
    inbox: list[Message] = [{"type": "http.request", "body": b""}]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop() if inbox else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def answer_of(messages: list[Message]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    start, *body = messages
    return (
        start["status"],
        [tuple(h) for h in start["headers"]],
        b"".join(bytes(m.get("body", b"")) for m in body),
    )


def settings_for(origins: str) -> Settings:
    return Settings(**{**UNIT_SETTINGS, "allowed_origins": origins})


async def assert_same(settings: Settings, method: str, headers: list[tuple[str, str]]) -> None:
    for answer in ANSWERS:
        app = answering(answer)
        expected = answer_of(await call(reference(app, settings.origins), method, headers))
        actual = answer_of(await call(merged(app, settings), method, headers))
        assert actual == expected, (method, headers, answer)


@pytest.mark.parametrize("configured", sorted(ORIGIN_SETTINGS))
@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
async def test_answers_carry_the_same_cors_headers(
    relay_settings: Settings, configured: str, method: str
) -> None:
    settings = settings_for(ORIGIN_SETTINGS[configured])
    for origin in ORIGINS:
        headers = [] if origin is None else [("Origin", origin)]
        await assert_same(settings, method, headers)
    # Two Origin headers: the first one counts, in both.
    await assert_same(settings, method, [("Origin", "https://evil.example"), ("Origin", LISTED)])


REQUESTED_METHODS = ["POST", "GET", "PUT", "post"]
REQUESTED_HEADERS = [
    None,
    "authorization",
    "Authorization, Content-Type",
    " x-api-key ,IDEMPOTENCY-KEY",
    "accept-language",
    "authorization, x-secret",
    "",
]


@pytest.mark.parametrize("configured", sorted(ORIGIN_SETTINGS))
async def test_preflights_are_answered_the_same(relay_settings: Settings, configured: str) -> None:
    settings = settings_for(ORIGIN_SETTINGS[configured])
    sent = [o for o in ORIGINS if o is not None]
    cases = itertools.product(sent, REQUESTED_METHODS, REQUESTED_HEADERS, [None, "true"])
    for origin, method, wanted, private in cases:
        headers = [("Origin", origin), ("Access-Control-Request-Method", method)]
        if wanted is not None:
            headers.append(("Access-Control-Request-Headers", wanted))
        if private is not None:
            headers.append(("Access-Control-Request-Private-Network", private))
        await assert_same(settings, "OPTIONS", headers)


async def test_an_options_request_that_is_no_preflight_reaches_the_app(
    relay_settings: Settings,
) -> None:
    settings = settings_for(ORIGIN_SETTINGS["listed"])
    await assert_same(settings, "OPTIONS", [("Origin", LISTED)])  # no request method
    await assert_same(settings, "OPTIONS", [("Access-Control-Request-Method", "POST")])
