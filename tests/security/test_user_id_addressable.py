"""Issue 12, finding 9: every user id sign-in accepts can be sent to and terminated.

A user signed in with the JWT `sub` `auth0|123` could not be terminated: `/v1/users/{id}/terminate`
answered 400 (`|` was not a user id character) and the socket stayed open. Sign-in and the user
routes now share one rule (core.validation.is_user_id): 1 to 200 characters, no control character
and no lone surrogate. The ids are sent percent-encoded and decoded once, by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.validation import is_user_id
from providers.pusherproto.frames import ErrorCode
from tests import lambda_runtime
from tests.security.conftest import (
    API_HEADERS,
    APP_KEY,
    PROBLEM,
    PROBLEM_PREFIX,
    bearer,
    serve,
    user_token,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from websockets.asyncio.client import ClientConnection

    from tests.security.conftest import Target

ADDRESSABLE = {
    "auth0": "auth0|123",
    "google": "google-oauth2|1234",
    "email": "a@b.c",
    "uuid": "3f2b8c1e-9d4a-4f6b-8e2a-1c5d7e9f0a1b",
    "slash": "org/42/user/7",
    "percent": "50%off",
    "query-chars": "a?b#c&d=e",
    "space": "Ada Lovelace",
    "unicode": "zoë·東京",
    "longest": "u" * 200,
}
# Every id sign-in refuses, and so every user route refuses.
REFUSED = {
    "too-long": "u" * 201,
    "newline": "alice\nbob",
    "carriage-return": "alice\r",
    "nul": "alice\x00",
    "tab": "a\tb",
    "del": "alice\x7f",
    "c1-next-line": "alice\x85",
    "line-separator": "alice\u2028bob",
    "paragraph-separator": "alice\u2029",
}


def _user_path(user_id: str, action: str) -> str:
    return f"/v1/users/{quote(user_id, safe='')}/{action}"


def _assert_problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == PROBLEM_PREFIX + slug


async def _next(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
    return frame


@contextlib.asynccontextmanager
async def _relay(target: Target) -> AsyncIterator[tuple[int, httpx.AsyncClient]]:
    async with serve(target.app) as port:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            yield port, client


async def _sign_in(ws: ClientConnection, client: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    """pusher-js's userAuthentication then pusher:signin; return the server's answer."""
    established = await _next(ws)
    socket_id = orjson.loads(established["data"])["socket_id"]
    answer = await client.post(
        "/auth/user", data={"socket_id": socket_id}, headers=bearer(user_token(user_id))
    )
    assert answer.status_code == 200, answer.text
    signed = answer.json()
    assert orjson.loads(signed["user_data"])["id"] == user_id
    await ws.send(orjson.dumps({"event": "pusher:signin", "data": signed}).decode())
    return await _next(ws)


@pytest.mark.parametrize("user_id", ADDRESSABLE.values(), ids=ADDRESSABLE.keys())
async def test_a_signed_in_user_can_be_sent_to_then_terminated(
    local_target: Target, user_id: str
) -> None:
    async with (
        _relay(local_target) as (port, client),
        connect(f"ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7") as ws,
    ):
        signed_in = await _sign_in(ws, client, user_id)
        assert signed_in["event"] == "pusher:signin_success", signed_in
        own = f"#server-to-user-{user_id}"
        subscribe = {"event": "pusher:subscribe", "data": {"channel": own}}
        await ws.send(orjson.dumps(subscribe).decode())
        assert (await _next(ws))["event"] == "pusher_internal:subscription_succeeded"

        sent = await client.post(
            _user_path(user_id, "events"),
            json={"name": "note", "data": {"hello": user_id}},
            headers=API_HEADERS,
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["user_id"] == user_id
        note = await _next(ws)
        assert (note["event"], note["channel"]) == ("note", own)
        assert orjson.loads(note["data"]) == {"hello": user_id}

        terminated = await client.post(_user_path(user_id, "terminate"), headers=API_HEADERS)
        assert terminated.status_code == 200, terminated.text
        assert terminated.json() == {"provider": "local", "user_id": user_id}
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 3)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == ErrorCode.UNAUTHORIZED


async def test_terminate_closes_only_that_users_sockets(local_target: Target) -> None:
    async with (
        _relay(local_target) as (port, client),
        connect(f"ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7") as target_ws,
        connect(f"ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7") as other_ws,
    ):
        assert (await _sign_in(target_ws, client, "auth0|123"))["event"].endswith("success")
        # `auth0%7C123` is the encoded form of the other id: decoded once, they stay apart.
        assert (await _sign_in(other_ws, client, "auth0%7C123"))["event"].endswith("success")
        terminated = await client.post(_user_path("auth0|123", "terminate"), headers=API_HEADERS)
        assert terminated.status_code == 200
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(target_ws.recv(), 3)
        await other_ws.send(orjson.dumps({"event": "pusher:ping", "data": {}}).decode())
        assert (await _next(other_ws))["event"] == "pusher:pong"


@pytest.mark.parametrize("user_id", REFUSED.values(), ids=REFUSED.keys())
async def test_an_id_sign_in_refuses_is_refused_by_the_user_routes(
    local_target: Target, user_id: str
) -> None:
    assert not is_user_id(user_id)
    signin = await local_target.http.post(
        "/auth/user", data={"socket_id": "123.456"}, headers=bearer(user_token(user_id))
    )
    _assert_problem(signin, 401, "invalid-token")
    for action in ("terminate", "events"):
        answer = await local_target.http.post(
            _user_path(user_id, action), json={"name": "note", "data": 1}, headers=API_HEADERS
        )
        _assert_problem(answer, 400, "invalid-user-id")


async def test_an_empty_user_id_is_refused(local_target: Target) -> None:
    answer = await local_target.http.post("/v1/users//terminate", headers=API_HEADERS)
    _assert_problem(answer, 400, "invalid-user-id")


async def test_a_lone_surrogate_sub_cannot_sign_in(local_target: Target) -> None:
    # No URL can name it (it has no UTF-8 form), so sign-in must not accept it either.
    signin = await local_target.http.post(
        "/auth/user", data={"socket_id": "123.456"}, headers=bearer(user_token("alice\ud800"))
    )
    _assert_problem(signin, 401, "invalid-token")


@pytest.mark.parametrize("user_id", ADDRESSABLE.values(), ids=ADDRESSABLE.keys())
async def test_every_addressable_id_signs_in(local_target: Target, user_id: str) -> None:
    assert is_user_id(user_id)
    signin = await local_target.http.post(
        "/auth/user", data={"socket_id": "123.456"}, headers=bearer(user_token(user_id))
    )
    assert signin.status_code == 200, signin.text


# -- API Gateway: the user's connections are found by the same id --------------------------------
@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The API Gateway handlers on moto and a stub management API."""
    from moto import mock_aws

    from app.lambda_handler import LambdaRuntime
    from tests.e2e.apigw_support import (
        FakeLambda,
        aws_environment,
        build_relay,
        chat_policy,
        deploy_infra,
    )
    from tests.e2e.management_stub import StubThread

    aws_environment(monkeypatch)
    with mock_aws(), StubThread() as stub:
        deploy_infra()
        relay, provider = build_relay(
            stub.endpoint, policy=chat_policy(tmp_path), functions=FakeLambda()
        )
        runtime = LambdaRuntime(relay)
        lambda_runtime.install(runtime)
        try:
            yield runtime, provider, stub
        finally:
            lambda_runtime.install()


def test_a_gateway_user_signed_in_as_auth0_can_be_terminated(gateway: Any) -> None:
    from app import lambda_websocket as handlers
    from providers.pusherproto import signing
    from tests.e2e import apigw_support as gw

    runtime, provider, stub = gateway
    user_id = "auth0|123"

    def send(cid: str, frame: dict[str, Any]) -> dict[str, Any]:
        found = gw.event("apigw_default", body=orjson.dumps(frame).decode())
        found["requestContext"]["connectionId"] = cid
        answer = handlers.message(found, None)
        assert answer["statusCode"] == 200, answer
        return dict(orjson.loads(answer["body"])) if "body" in answer else {}

    assert handlers.connect(gw.connect_event("c1", gw.token(user_id)), None) == {"statusCode": 200}
    row = runtime.run(provider.store.connection("c1"))
    assert row.user_id == user_id
    user_data = orjson.dumps({"id": user_id, "user_info": {}}).decode()
    auth = signing.user_auth(
        gw.APP_KEY, gw.APP_SECRET, socket_id=row.socket_id, user_data=user_data
    )
    signin = {"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}
    # Posted, not the route response: a sign-in also tells the user's watchers it is online.
    assert send("c1", signin) == {}
    signed = [orjson.loads(body)["event"] for body in stub.bodies("c1")]
    assert signed == ["pusher:signin_success"]
    own = send("c1", gw.subscribe_frame(f"#server-to-user-{user_id}"))
    assert own["event"] == "pusher_internal:subscription_succeeded", own

    async def terminate() -> httpx.Response:
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            return await client.post(
                _user_path(user_id, "terminate"), headers={"X-API-Key": gw.API_KEY}
            )

    answer = runtime.run(terminate())
    assert answer.status_code == 200, answer.text
    assert stub.deletes == ["c1"]
