"""RELAY_ALLOWED_ORIGINS: browser origins on the auth endpoints, SSE and the local WebSocket,
and the CORS answers browsers need."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.main import create_app
from core.settings import Settings
from core.tokens import mint_dev_token
from tests.servers import serve
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.servers import LiveServer

ALLOWED = "https://app.example.com"
ALSO_ALLOWED = "https://admin.example.com"
FORBIDDEN = "https://evil.example"
PROBLEM = "urn:realtime-relay:problem:origin-not-allowed"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        **UNIT_SETTINGS,
        "allowed_origins": f"{ALLOWED}, {ALSO_ALLOWED}/",
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def open_app(
    relay_settings: Settings,
) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
    """`async with open_app(**settings) as http:` (relay_settings cleared RELAY_* first)."""

    @contextlib.asynccontextmanager
    async def opened(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(make_settings(**overrides))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
            yield http

    return opened


def user_headers(origin: str | None) -> dict[str, str]:
    token = mint_dev_token(make_settings(), user_id="alice")
    headers = {"Authorization": f"Bearer {token}"}
    if origin is not None:
        headers["Origin"] = origin
    return headers


def assert_origin_refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == PROBLEM
    assert FORBIDDEN not in response.text  # the refusal does not echo the origin


AUTH_CHANNEL = {"socket_id": "1234.5678", "channel_name": "private-user-alice"}


async def call(http: httpx.AsyncClient, route: str, origin: str | None) -> httpx.Response:
    headers = user_headers(origin)
    if route == "/auth/channel":
        return await http.post(route, data=AUTH_CHANNEL, headers=headers)
    if route == "/auth/user":
        return await http.post(route, data={"socket_id": "1234.5678"}, headers=headers)
    if route == "GET /auth/token":
        return await http.get("/auth/token", headers=headers)
    if route == "POST /auth/token":
        return await http.post("/auth/token", headers=headers)
    # SSE: an invalid channel answers at once (400) once past the origin check.
    return await http.get("/v1/stream", params={"channel": "bad channel!"}, headers=headers)


ROUTES = ["/auth/channel", "/auth/user", "GET /auth/token", "POST /auth/token", "/v1/stream"]


@pytest.mark.parametrize("route", ROUTES)
async def test_a_forbidden_origin_is_refused(open_app: Any, route: str) -> None:
    async with open_app() as http:
        assert_origin_refused(await call(http, route, FORBIDDEN))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("origin", [ALLOWED, ALSO_ALLOWED, ALSO_ALLOWED + "/", None])
async def test_an_allowed_origin_or_none_passes(
    open_app: Any, route: str, origin: str | None
) -> None:
    async with open_app() as http:
        response = await call(http, route, origin)
    assert response.status_code != 403, response.text
    assert response.status_code in (200, 400, 501)  # the route's own answer


@pytest.mark.parametrize(
    "origin",
    [
        "http://app.example.com",  # another scheme is another origin
        "https://app.example.com:8443",
        "https://app.example.com.evil.example",
        "https://sub.app.example.com",
        "null",  # sandboxed frames and file:// pages
    ],
)
async def test_near_misses_are_refused(open_app: Any, origin: str) -> None:
    async with open_app() as http:
        response = await call(http, "/auth/channel", origin)
    assert response.status_code == 403, response.text


async def test_the_signed_answer_is_given_to_an_allowed_origin(open_app: Any) -> None:
    async with open_app() as http:
        response = await call(http, "/auth/channel", ALLOWED)
    assert response.status_code == 200, response.text
    assert response.json()["auth"].startswith("unit-key:")
    assert response.headers["access-control-allow-origin"] == ALLOWED


async def test_publishing_is_not_origin_guarded(open_app: Any) -> None:
    # Servers publish; the API key is the guard. An Origin header changes nothing.
    async with open_app() as http:
        response = await http.post(
            "/v1/events",
            json={"name": "e", "channel": "news", "data": "x"},
            headers={"X-API-Key": str(UNIT_SETTINGS["api_keys"]), "Origin": FORBIDDEN},
        )
    assert response.status_code == 200, response.text


async def test_health_is_not_origin_guarded(open_app: Any) -> None:
    async with open_app() as http:
        response = await http.get("/health", headers={"Origin": FORBIDDEN})
    assert response.status_code == 200


async def test_cors_preflight_answers_with_the_allowed_origin(open_app: Any) -> None:
    async with open_app() as http:
        response = await http.options(
            "/auth/channel",
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers
    assert "idempotency-key" in allowed_headers


async def test_cors_preflight_from_a_forbidden_origin_gets_no_grant(open_app: Any) -> None:
    async with open_app() as http:
        response = await http.options(
            "/auth/channel",
            headers={"Origin": FORBIDDEN, "Access-Control-Request-Method": "POST"},
        )
    assert response.status_code >= 400
    assert "access-control-allow-origin" not in response.headers


async def test_cors_exposes_retry_after_and_the_replay_header(open_app: Any) -> None:
    async with open_app() as http:
        response = await http.get("/health", headers={"Origin": ALLOWED})
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "retry-after" in exposed
    assert "idempotent-replayed" in exposed


@pytest.mark.parametrize("env", ["development", "test"])
async def test_any_origin_outside_production_by_default(open_app: Any, env: str) -> None:
    async with open_app(env=env, allowed_origins=()) as http:
        response = await call(http, "/auth/channel", FORBIDDEN)
        preflight = await http.options(
            "/auth/channel",
            headers={"Origin": FORBIDDEN, "Access-Control-Request-Method": "POST"},
        )
    assert response.status_code == 200, response.text
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", FORBIDDEN)


async def test_no_origin_in_production_by_default(open_app: Any) -> None:
    assert make_settings(env="production", allowed_origins=()).origins == ()
    async with open_app(env="production", allowed_origins=()) as http:
        assert_origin_refused(await call(http, "/auth/channel", FORBIDDEN))
        assert (await call(http, "/auth/channel", ALLOWED)).status_code == 403
        assert (await call(http, "/auth/channel", None)).status_code == 200  # servers, curl
        preflight = await http.options(
            "/auth/channel",
            headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
        )
    assert "access-control-allow-origin" not in preflight.headers


def test_the_setting_is_checked(relay_settings: Settings) -> None:
    assert make_settings().origins == (ALLOWED, ALSO_ALLOWED)
    assert make_settings(allowed_origins="*").origins == ("*",)
    with pytest.raises(ValueError, match="origins look like"):
        make_settings(allowed_origins="app.example.com")


# --- the local WebSocket -----------------------------------------------------------------------


@pytest.fixture(params=["asgi", "lean"])
async def ws_server(
    relay_settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[LiveServer]:
    """Both transports of the local socket: the ASGI route, and the lean server of relay serve."""
    async with serve(create_app(make_settings()), lean=request.param == "lean") as server:
        yield server


def ws_url(server: LiveServer) -> str:
    return f"{server.ws_url}/app/{UNIT_SETTINGS['app_key']}?protocol=7"


async def test_websocket_from_a_forbidden_origin_is_refused_with_403(ws_server: LiveServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(ws_server), origin=FORBIDDEN, open_timeout=5):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", [ALLOWED, None])
async def test_websocket_from_an_allowed_origin_or_none_connects(
    ws_server: LiveServer, origin: str | None
) -> None:
    async with connect(ws_url(ws_server), origin=origin, open_timeout=5) as ws:  # type: ignore[arg-type]
        frame = orjson.loads(await ws.recv())
    assert frame["event"] == "pusher:connection_established"
