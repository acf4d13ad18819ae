"""The Ably provider behind the relay's routes: /auth/token, publish, members, history, imports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from app.main import create_app
from app.relay import Relay
from providers.ably.provider import AblyProvider
from providers.ably.settings import AblySettings
from providers.ably.token import token_mac
from tests.import_probe import fresh

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from core.settings import Settings

KEY_NAME = "appId.keyId"
SECRET = "unit-ably-secret"
ROOT = Path(__file__).resolve().parents[4]


class Recorder:
    """A tiny Ably REST stand-in: records requests, answers each route with canned data."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/presence"):
            return httpx.Response(200, json=[{"clientId": "bob", "action": 1, "data": {"n": 1}}])
        if request.method == "GET":
            newest_first = [
                {"id": "m:1", "name": "b", "data": "2"},
                {"id": "m:0", "name": "a", "data": "1"},
            ]
            return httpx.Response(200, json=newest_first)
        return httpx.Response(201, json={"channel": "x", "messageId": "m"})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def ably_http(
    relay_settings: Settings, recorder: Recorder
) -> AsyncIterator[httpx.AsyncClient]:
    settings = AblySettings(api_key=SecretStr(f"{KEY_NAME}:{SECRET}"))
    rest_client = httpx.AsyncClient(
        transport=httpx.MockTransport(recorder), base_url=settings.base_url
    )
    provider = AblyProvider(settings, http=rest_client)
    app = create_app(relay=Relay.build(relay_settings, provider=provider))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        yield client
    await rest_client.aclose()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _verify_mac(request: dict[str, Any]) -> None:
    assert request["mac"] == token_mac(
        SECRET,
        key_name=request["keyName"],
        ttl_ms=request["ttl"],
        capability=request["capability"],
        client_id=request.get("clientId"),
        timestamp_ms=request["timestamp"],
        nonce=request["nonce"],
    )


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_auth_token_answers_a_signed_token_request(
    ably_http: httpx.AsyncClient, relay_token: Callable[..., str], method: str
) -> None:
    response = await ably_http.request(method, "/auth/token", headers=_bearer(relay_token("alice")))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"keyName", "ttl", "capability", "clientId", "timestamp", "nonce", "mac"}
    assert (body["keyName"], body["clientId"], body["ttl"]) == (KEY_NAME, "alice", 3_600_000)
    assert json.loads(body["capability"]) == {"private-user-alice": ["history", "subscribe"]}
    _verify_mac(body)
    assert SECRET not in response.text


async def test_each_token_request_has_its_own_nonce(
    ably_http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    headers = _bearer(relay_token("alice"))
    first = (await ably_http.get("/auth/token", headers=headers)).json()
    second = (await ably_http.get("/auth/token", headers=headers)).json()
    assert first["nonce"] != second["nonce"]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_auth_token_grants_the_channels_the_client_names_and_the_policy_allows(
    ably_http: httpx.AsyncClient, relay_token: Callable[..., str], method: str
) -> None:
    wanted = "news,presence-lobby,private-user-bob"
    headers = _bearer(relay_token("alice"))
    if method == "GET":
        response = await ably_http.get("/auth/token", params={"channels": wanted}, headers=headers)
    else:
        response = await ably_http.post("/auth/token", data={"channels": wanted}, headers=headers)
    assert response.status_code == 200, response.text
    capability = json.loads(response.json()["capability"])
    assert sorted(capability["news"]) == ["history", "subscribe"]  # public: history too
    assert sorted(capability["presence-lobby"]) == ["presence", "subscribe"]
    assert "private-user-bob" not in capability  # another user's channel: never granted
    assert capability["private-user-alice"] == ["history", "subscribe"]


async def test_auth_token_refuses_a_malformed_channel_name(
    ably_http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await ably_http.get(
        "/auth/token",
        params={"channels": "news,bad channel"},
        headers=_bearer(relay_token("alice")),
    )
    assert response.status_code == 400
    assert response.json()["type"] == "urn:realtime-relay:problem:invalid-channel"


async def test_auth_token_refuses_anonymous_and_backends(
    ably_http: httpx.AsyncClient, relay_api_key: str
) -> None:
    anonymous = await ably_http.get("/auth/token")
    assert anonymous.status_code == 401
    backend = await ably_http.post("/auth/token", headers={"X-API-Key": relay_api_key})
    assert backend.status_code == 403
    assert backend.json()["type"] == "urn:realtime-relay:problem:forbidden"


async def test_events_publish_through_the_ably_rest_api(
    ably_http: httpx.AsyncClient, relay_api_key: str, recorder: Recorder
) -> None:
    response = await ably_http.post(
        "/v1/events",
        json={"name": "greeting", "channels": ["news", "sports"], "data": {"text": "hi"}},
        headers={"X-API-Key": relay_api_key},
    )
    assert response.status_code == 200, response.text
    receipts = response.json()["receipts"]
    (request,) = recorder.requests
    assert request.url.path == "/messages"
    specs = orjson.loads(request.content)
    assert [(s["channels"], s["messages"]["id"]) for s in specs] == [
        (r["channel"], r["id"]) for r in receipts
    ]
    assert specs[0]["messages"]["data"] == '{"text":"hi"}'


async def test_members_route_reads_ably_presence(
    ably_http: httpx.AsyncClient, relay_api_key: str, recorder: Recorder
) -> None:
    response = await ably_http.get(
        "/v1/channels/presence-lobby/members", headers={"X-API-Key": relay_api_key}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "channel": "presence-lobby",
        "count": 1,
        "members": [{"user_id": "bob", "user_info": {"n": 1}}],
    }
    assert recorder.requests[0].url.path == "/channels/presence-lobby/presence"


async def test_messages_route_reads_ably_history_oldest_first(
    ably_http: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await ably_http.get("/v1/channels/news/messages?limit=2")
    assert response.status_code == 200, response.text
    assert [m["id"] for m in response.json()["messages"]] == ["m:0", "m:1"]
    assert recorder.requests[0].url.params["limit"] == "2"


# -- cold start --------------------------------------------------------------------------------

OTHERS = ("pusher", "nacl", "boto3", "botocore", "redis", "supabase", "realtime", "mangum")
PROGRAM = f"""
import json, sys
from app.main import create_app
from core.settings import Settings

app = create_app(Settings(
    env="test",
    provider="ably",
    app_secret="unit-app-secret-0123456789",
    jwt_secret="unit-jwt-secret-0123456789abcdef0123456789",
    api_keys="unit-api-key-0123456789",
))
assert app.state.relay.provider.name == "ably"
watched = {OTHERS!r} + ("ably", "httpx")  # httpx: the REST client is built on first use
print(json.dumps({{
    "loaded": sorted({{m.split(".")[0] for m in sys.modules if m.split(".")[0] in watched}}),
    "provider_loaded": "providers.ably.provider" in sys.modules,
}}))
"""


def _run(program: str) -> dict[str, Any]:
    result: dict[str, Any] = fresh(program, {"ABLY_API_KEY": f"{KEY_NAME}:{SECRET}"})
    return result


def test_the_ably_app_imports_no_other_sdk_and_not_the_ably_sdk() -> None:
    result = _run(PROGRAM)
    assert result == {"loaded": [], "provider_loaded": True}


def test_the_probe_sees_an_sdk_that_is_imported() -> None:
    result = _run("import ably, redis\n" + PROGRAM)
    assert result["loaded"] == ["ably", "httpx", "redis"]  # the ably SDK brings httpx
