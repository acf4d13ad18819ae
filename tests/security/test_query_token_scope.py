"""Issue 12, finding 10: `?token=` is taken only where a header cannot be sent.

`Relay.identify` read a `token` query parameter on every route, so a user's JWT was accepted in
URLs (which end up in proxy, browser and referrer logs) on routes whose clients can always send
an Authorization header. Now only `GET /v1/stream` (EventSource sends no headers) takes it; the
API Gateway `$connect` reads its own. Anywhere else a `token` parameter is refused with 401
`invalid-token`, never ignored: ignoring it could quietly turn the caller into anonymous.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.security.conftest import (
    API_HEADERS,
    APP_KEY,
    PROBLEM,
    PROBLEM_PREFIX,
    SOCKET_ID,
    bearer,
    serve,
    user_token,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.security.conftest import Target

# (method, path, form or JSON body): every route that identifies its caller, but the stream.
ROUTES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "auth-channel": (
        "POST",
        "/auth/channel",
        {"data": {"socket_id": SOCKET_ID, "channel_name": "private-user-alice"}},
    ),
    "auth-user": ("POST", "/auth/user", {"data": {"socket_id": SOCKET_ID}}),
    "auth-token-get": ("GET", "/auth/token", {}),
    "auth-token-post": ("POST", "/auth/token", {"data": {}}),
    "events": (
        "POST",
        "/v1/events",
        {"json": {"name": "e", "channel": "open-forge", "data": 1}},
    ),
    "batch": (
        "POST",
        "/v1/batch",
        {"json": {"batch": [{"name": "e", "channel": "open-forge", "data": 1}]}},
    ),
    "occupancy": ("GET", "/v1/channels/open-forge", {}),
    "members": ("GET", "/v1/channels/presence-room/members", {}),
    "messages": ("GET", "/v1/channels/open-forge/messages", {}),
    "user-events": ("POST", "/v1/users/alice/events", {"json": {"name": "e", "data": 1}}),
    "user-terminate": ("POST", "/v1/users/alice/terminate", {}),
}
DETAIL = "send the token in the Authorization header, not in ?token="


def _assert_invalid_token(response: httpx.Response, detail: str = DETAIL) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == PROBLEM_PREFIX + "invalid-token", body
    assert body["detail"] == detail
    assert "error=" in response.headers["www-authenticate"]


async def _call(
    target: Target, route: str, *, params: dict[str, str], headers: dict[str, str]
) -> httpx.Response:
    method, path, body = ROUTES[route]
    return await target.http.request(method, path, params=params, headers=headers, **body)


@pytest.mark.parametrize("route", ROUTES)
async def test_a_valid_user_token_in_the_query_is_refused(target: Target, route: str) -> None:
    answer = await _call(target, route, params={"token": user_token("alice")}, headers={})
    _assert_invalid_token(answer)
    target.assert_untouched()


@pytest.mark.parametrize("route", ROUTES)
async def test_a_query_token_next_to_a_good_header_is_refused_not_ignored(
    target: Target, route: str
) -> None:
    headers = API_HEADERS if route.startswith(("events", "batch", "user")) else {}
    headers = headers or bearer(user_token("alice"))
    answer = await _call(target, route, params={"token": "anything"}, headers=headers)
    _assert_invalid_token(answer)
    target.assert_untouched()


@pytest.mark.parametrize("value", ["", "not-a-jwt"])
async def test_a_query_token_does_not_downgrade_to_anonymous(target: Target, value: str) -> None:
    # Anonymous may ask how busy a public channel is: the token must not be dropped to get there.
    anonymous = await target.http.get("/v1/channels/open-forge")
    answer = await target.http.get("/v1/channels/open-forge", params={"token": value})
    _assert_invalid_token(answer)
    assert anonymous.status_code != 401


async def test_the_header_alone_still_works(local_target: Target) -> None:
    answer = await local_target.authorize(user_token("alice"), "private-user-alice")
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"auth"}


# -- the stream keeps ?token= --------------------------------------------------------------------
async def _stream_status(port: int, params: Sequence[tuple[str, str]]) -> tuple[int, str]:
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client,
        client.stream("GET", "/v1/stream", params=tuple(params)) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            return response.status_code, response.json()["type"]
        return 200, response.headers["content-type"]


async def test_the_stream_takes_a_query_token(local_target: Target, lean_sse: bool) -> None:
    async with serve(local_target.app, guarded=lean_sse) as port:
        alice = user_token("alice")
        opened = await _stream_status(port, [("channel", "private-user-alice"), ("token", alice)])
        assert opened == (200, "text/event-stream; charset=utf-8")
        refused = await _stream_status(port, [("channel", "private-user-alice")])
        assert refused == (401, PROBLEM_PREFIX + "unauthenticated")


async def test_the_stream_refuses_two_query_tokens(local_target: Target, lean_sse: bool) -> None:
    alice = user_token("alice")
    async with serve(local_target.app, guarded=lean_sse) as port:
        twice = [("channel", "private-user-alice"), ("token", alice), ("token", alice)]
        assert await _stream_status(port, twice) == (401, PROBLEM_PREFIX + "invalid-token")


async def test_the_local_websocket_reads_no_token(local_target: Target) -> None:
    # pusher-js authorizes private channels through /auth/channel: a `token` on the socket URL
    # grants nothing and refuses nothing.
    async with (
        serve(local_target.app) as port,
        connect(f"ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7&token=x") as ws,
    ):
        established = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
        assert established["event"] == "pusher:connection_established"
        subscribe = {"event": "pusher:subscribe", "data": {"channel": "private-user-alice"}}
        await ws.send(orjson.dumps(subscribe).decode())
        refused = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
        assert refused["event"] == "pusher:subscription_error"


# -- repeated credential headers -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["authorization", "x-api-key"])
async def test_a_repeated_credential_header_is_refused(target: Target, name: str) -> None:
    # Which of two credentials would count is up to the proxy in front: refuse rather than guess.
    value = API_HEADERS["X-API-Key"] if name == "x-api-key" else f"Bearer {user_token('alice')}"
    headers = [(name, value), (name, value)]
    answer = await target.http.post(
        "/v1/events", json={"name": "e", "channel": "open-forge", "data": 1}, headers=headers
    )
    _assert_invalid_token(answer, "more than one credential presented")
    target.assert_untouched()
