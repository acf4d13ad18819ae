"""The relay's one middleware layer (app.middleware.Front): the body cap and read deadline, the
origin allowlist, the access log, and the auth endpoints it serves below FastAPI's routing
answering exactly as FastAPI would. CORS: tests/unit/app/test_cors.py."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from fastapi import FastAPI

from app.main import RelayApp, create_app
from core.settings import Settings
from core.tokens import mint_dev_token
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message

PROBLEM = "urn:realtime-relay:problem:"
ALLOWED = "https://app.example.com"
LIMIT = 2048


def make_app(**overrides: Any) -> RelayApp:
    values = {
        **UNIT_SETTINGS,
        "allowed_origins": ALLOWED,
        "max_body_bytes": LIMIT,
        "request_read_timeout_seconds": 0.2,
        **overrides,
    }
    return create_app(Settings(**values))


class Exchange:
    """One request driven straight into an ASGI app; the messages it sent back."""

    def __init__(self, sent: list[Message]) -> None:
        self.sent = sent

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [tuple(h) for h in self.sent[0]["headers"]]

    def header(self, name: str) -> str | None:
        return next((v.decode() for k, v in self.headers if k == name.encode()), None)

    @property
    def body(self) -> bytes:
        return b"".join(bytes(m.get("body", b"")) for m in self.sent[1:])

    def problem(self, status: int, slug: str) -> dict[str, Any]:
        assert self.status == status, self.body
        assert self.header("content-type") == "application/problem+json"
        assert self.header("content-length") == str(len(self.body))
        found: dict[str, Any] = orjson.loads(self.body)
        assert found["type"] == PROBLEM + slug
        return found


async def exchange(
    app: ASGIApp,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    chunks: list[bytes] | None = None,
    pause: float = 0.0,
) -> Exchange:
    """`chunks` arrive one by one (`pause` seconds apart), as a client sending a body does."""
    chunks = [b""] if chunks is None else chunks
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("10.0.0.1", 4000),
        "server": ("relay", 80),
    }
    sent: list[Message] = []
    pending = list(chunks)

    async def receive() -> Message:
        if not pending:
            await asyncio.sleep(3600)  # the client says nothing more
        if pause:
            await asyncio.sleep(pause)
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return Exchange(sent)


def bearer(user_id: str) -> str:
    return "Bearer " + mint_dev_token(Settings(**UNIT_SETTINGS), user_id=user_id)


FORM = {"content-type": "application/x-www-form-urlencoded"}


# --- the body: a cap and a deadline, before any route --------------------------------------------


async def test_a_declared_body_over_the_cap_is_413_before_it_is_read(
    relay_settings: Settings,
) -> None:
    headers = {"content-length": str(LIMIT + 1), "origin": ALLOWED}
    answer = await exchange(make_app(), "POST", "/v1/events", headers=headers, chunks=[])
    body = answer.problem(413, "payload-too-large")
    assert body["instance"] == "/v1/events"
    assert answer.header("connection") == "close"
    assert answer.header("access-control-allow-origin") == ALLOWED  # CORS applies to it too


@pytest.mark.parametrize("length", ["12x", "-1", ""])
async def test_a_malformed_content_length_is_413(relay_settings: Settings, length: str) -> None:
    answer = await exchange(make_app(), "POST", "/v1/events", headers={"content-length": length})
    answer.problem(413, "payload-too-large")


async def test_an_undeclared_body_over_the_cap_is_413(relay_settings: Settings) -> None:
    chunks = [b"x" * 1000] * 3  # no content-length: counted as it arrives
    answer = await exchange(make_app(), "POST", "/auth/channel", chunks=chunks)
    answer.problem(413, "payload-too-large")


async def test_a_trickled_body_is_408_at_the_deadline(relay_settings: Settings) -> None:
    chunks = [b"socket_id=1"] * 10  # 0.1 s apart: 1 s in all, the deadline is 0.2 s
    started = asyncio.get_running_loop().time()
    answer = await exchange(make_app(), "POST", "/auth/channel", chunks=chunks, pause=0.1)
    assert asyncio.get_running_loop().time() - started < 1.0
    body = answer.problem(408, "request-timeout")
    assert body["instance"] == "/auth/channel"
    assert answer.header("connection") == "close"


async def test_a_body_in_pieces_within_the_deadline_is_served(relay_settings: Settings) -> None:
    pieces = [b"socket_id=1234.5678", b"&channel_name=private-user-al"]
    headers = {**FORM, "authorization": bearer("al")}
    answer = await exchange(make_app(), "POST", "/auth/channel", headers=headers, chunks=pieces)
    assert answer.status == 200, answer.body
    assert set(orjson.loads(answer.body)) == {"auth"}


# --- origins -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/channel", "/auth/user", "/auth/token", "/v1/stream"])
async def test_a_page_of_another_origin_is_refused_before_the_route(
    relay_settings: Settings, path: str
) -> None:
    headers = {"origin": "https://evil.example", "authorization": bearer("al")}
    answer = await exchange(make_app(), "POST", path, headers=headers)
    body = answer.problem(403, "origin-not-allowed")
    assert body["instance"] == path
    assert answer.header("vary") == "Origin"
    assert answer.header("access-control-allow-origin") is None


# --- the access log ------------------------------------------------------------------------------


async def test_one_access_log_line_per_request(
    relay_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    caplog.set_level(logging.INFO, logger="app.access")
    headers = {**FORM, "authorization": bearer("al")}
    body = [b"socket_id=1234.5678&channel_name=private-user-al"]
    await exchange(app, "POST", "/auth/channel", headers=headers, chunks=body)  # direct
    await exchange(app, "GET", "/health")  # FastAPI
    await exchange(app, "POST", "/auth/user", headers={"origin": "https://evil.example"})
    await exchange(app, "GET", "/v1/channels/a\nb")
    lines = [r.getMessage() for r in caplog.records if r.name == "app.access"]
    assert [line.rsplit(" ", 1)[0] for line in lines] == [
        "POST /auth/channel 200",
        "GET /health 200",
        "POST /auth/user 403",
        "GET /v1/channels/a\\nb 400",
    ]
    assert all(line.endswith("ms") for line in lines)


# --- the auth endpoints served below FastAPI answer as FastAPI would -----------------------------


def fastapi_only(app: RelayApp) -> ASGIApp:
    """The same app entered below Front: FastAPI's routing, handlers and exception handlers."""

    async def call(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return call


AUTH_REQUESTS = [
    ("/auth/channel", {}, b"socket_id=1234.5678&channel_name=private-user-al"),
    ("/auth/channel", {"authorization": "al"}, b"socket_id=1234.5678&channel_name=presence-a"),
    ("/auth/channel", {"authorization": "bo"}, b"socket_id=1234.5678&channel_name=private-user-al"),
    ("/auth/channel", {"authorization": "al"}, b"socket_id=12345678&channel_name=private-a"),
    ("/auth/channel", {"authorization": "al"}, b"socket_id=1234.5678&channel_name=news"),
    ("/auth/channel", {"authorization": "al"}, b"socket_id=1234.5678&channel_name=bad name"),
    ("/auth/channel", {"authorization": "Bearer x.y.z"}, b"socket_id=1.2&channel_name=private-a"),
    ("/auth/channel", {"content-type": "text/plain"}, b"socket_id=1.2"),
    ("/auth/channel", {"content-type": "application/json"}, b"{not json"),
    ("/auth/user", {}, b"socket_id=1234.5678"),
    ("/auth/user", {"authorization": "al"}, b"socket_id=x"),
    ("/auth/user", {"authorization": "al"}, b"socket_id=1234.5678"),
    ("/auth/user", {"x-api-key": str(UNIT_SETTINGS["api_keys"])}, b"socket_id=1234.5678"),
]


@pytest.mark.parametrize(("path", "extra", "body"), AUTH_REQUESTS)
async def test_a_direct_answer_is_fastapis_answer(
    relay_settings: Settings, path: str, extra: dict[str, str], body: bytes
) -> None:
    app = make_app()
    headers = {**FORM, **extra}
    if headers.get("authorization") in ("al", "bo"):
        headers["authorization"] = bearer(headers["authorization"])
    front = await exchange(app, "POST", path, headers=headers, chunks=[body])
    below = await exchange(fastapi_only(app), "POST", path, headers=headers, chunks=[body])
    assert front.status == below.status
    assert front.body == below.body
    # Front adds CORS's Vary: Origin, as CORSMiddleware did to FastAPI's answers.
    assert front.headers == [*below.headers, (b"vary", b"Origin")]


async def test_an_unexpected_error_in_a_direct_route_is_a_logged_500(
    relay_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    def broken(**_: Any) -> dict[str, str]:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(app.state.relay.provider, "authenticate_user", broken)
    headers = {**FORM, "authorization": bearer("al")}
    with caplog.at_level(logging.ERROR, logger="app.problems"):
        answer = await exchange(
            app, "POST", "/auth/user", headers=headers, chunks=[b"socket_id=1.2"]
        )
    body = answer.problem(500, "internal")
    assert body["instance"] == "/auth/user"
    assert b"secret detail" not in answer.body
    assert any(r.exc_info for r in caplog.records)


def test_a_direct_route_takes_the_request_alone() -> None:
    from fastapi import APIRouter, Request

    from app.direct import Direct

    direct = Direct(APIRouter())

    async def with_a_parameter(request: Request, channel: str) -> Any:
        return None

    with pytest.raises(TypeError, match="takes the Request alone"):
        direct.post("/x")(with_a_parameter)  # type: ignore[type-var]
    assert not direct.endpoints
