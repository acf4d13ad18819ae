"""The Pusher HTTP API (app/pusher_http.py), signed as Pusher's server SDKs sign requests."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from pusher.pusher_client import PusherClient

from core.provider import PresenceData
from providers.pusherproto import signing

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from core.settings import Settings
    from providers.local.provider import LocalProvider
    from tests.servers import LiveServer
    from tests.unit.conftest import Recorder

PROBLEM = "urn:realtime-relay:problem:"
EVENTS = "/apps/4242/events"


def _signed(
    settings: Settings,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    params: dict[str, str] | None = None,
    timestamp: int | None = None,
    secret: str | None = None,
) -> dict[str, str]:
    return signing.sign_request(
        settings.app_key,
        secret or settings.app_secret.get_secret_value(),
        method,
        path,
        body=body,
        params=params,
        timestamp=timestamp,
    )


async def _post(
    http: httpx.AsyncClient, settings: Settings, path: str, payload: Any, **kwargs: Any
) -> httpx.Response:
    body = orjson.dumps(payload)
    return await http.post(
        path,
        content=body,
        params=_signed(settings, "POST", path, body, **kwargs),
        headers={"Content-Type": "application/json"},
    )


def _assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + slug
    return body


def _sdk(settings: Settings, host: str = "relay", port: int = 80) -> PusherClient:
    return PusherClient(
        app_id=settings.app_id,
        key=settings.app_key,
        secret=settings.app_secret.get_secret_value(),
        ssl=False,
        host=host,
        port=port,
    )


async def test_signed_trigger_is_delivered(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news", "sport")
    response = await _post(
        http,
        relay_settings,
        EVENTS,
        {"name": "update", "channels": ["news", "sport"], "data": '{"a":1}'},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert listener.events == [("news", "update", '{"a":1}'), ("sport", "update", '{"a":1}')]


async def test_single_channel_form_and_socket_exclusion(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    origin = relay_listen("news", socket_id="5.6")
    other = relay_listen("news", socket_id="7.8")
    response = await _post(
        http,
        relay_settings,
        EVENTS,
        {"name": "update", "channel": "news", "data": "x", "socket_id": "5.6"},
    )
    assert response.status_code == 200
    assert origin.events == []
    assert other.events == [("news", "update", "x")]


async def test_official_sdk_request_signing_is_accepted(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    request = _sdk(relay_settings).trigger.make_request(["news"], "update", {"n": 1})
    response = await http.post(
        request.signed_path, content=request.body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert listener.events == [("news", "update", '{"n": 1}')]


async def test_official_sdk_batch_is_accepted(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("a", "b")
    request = _sdk(relay_settings).trigger_batch.make_request(
        [
            {"channel": "a", "name": "one", "data": "1"},
            {"channel": "b", "name": "two", "data": {"n": 2}},
        ]
    )
    response = await http.post(
        request.signed_path, content=request.body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"batch": [{}, {}]}
    assert [(c, n) for c, n, _ in listener.events] == [("a", "one"), ("b", "two")]


async def test_official_sdk_over_the_network(
    live_server: LiveServer, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("presence-room")
    client = _sdk(relay_settings, host="127.0.0.1", port=live_server.port)
    assert await asyncio.to_thread(client.trigger, ["presence-room"], "hello", "x") == {}
    info = await asyncio.to_thread(client.channel_info, "presence-room", ["user_count"])
    assert info["occupied"] is True
    assert info["user_count"] == 0
    users = await asyncio.to_thread(client.users_info, "presence-room")
    assert users == {"users": []}
    assert listener.events == [("presence-room", "hello", "x")]


async def test_batch_with_one_invalid_event_publishes_nothing(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("a")
    response = await _post(
        http,
        relay_settings,
        "/apps/4242/batch_events",
        {
            "batch": [
                {"channel": "a", "name": "one", "data": "1"},
                {"channel": "a", "name": "pusher:two", "data": "2"},
            ]
        },
    )
    body = _assert_problem(response, 400, "invalid-event-name")
    assert body["item"] == 1
    assert body["detail"].startswith("batch item 1: ")
    assert listener.events == []


@pytest.mark.parametrize("payload", [{"batch": "nope"}, {"batch": [1, 2]}, {}])
async def test_malformed_batch_is_400(
    http: httpx.AsyncClient, relay_settings: Settings, payload: dict[str, Any]
) -> None:
    response = await _post(http, relay_settings, "/apps/4242/batch_events", payload)
    _assert_problem(response, 400, "invalid-request")


async def test_trigger_goes_through_validation(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    too_big = await _post(
        http, relay_settings, EVENTS, {"name": "e", "channel": "news", "data": "é" * 6000}
    )
    _assert_problem(too_big, 413, "payload-too-large")
    no_channel = await _post(http, relay_settings, EVENTS, {"name": "e", "data": "x"})
    _assert_problem(no_channel, 400, "invalid-channel")


async def test_body_that_is_not_a_json_object_is_400(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    body = b"[1,2,3]"
    response = await http.post(
        EVENTS, content=body, params=_signed(relay_settings, "POST", EVENTS, body)
    )
    _assert_problem(response, 400, "invalid-request")


async def test_wrong_app_id_is_404(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    response = await _post(
        http, relay_settings, "/apps/9999/events", {"name": "e", "channel": "news", "data": "x"}
    )
    _assert_problem(response, 404, "not-found")
    assert listener.events == []


async def test_bad_signature_is_401_without_echo(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    body = orjson.dumps({"name": "e", "channel": "news", "data": "x"})
    params = _signed(relay_settings, "POST", EVENTS, body, secret="not-the-secret-0123456789")
    response = await http.post(EVENTS, content=body, params=params)
    _assert_problem(response, 401, "invalid-signature")
    assert params["auth_signature"] not in response.text
    assert listener.events == []


async def test_tampered_body_is_401(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    signed = orjson.dumps({"name": "e", "channel": "news", "data": "x"})
    sent = orjson.dumps({"name": "e", "channel": "news", "data": "evil"})
    response = await http.post(
        EVENTS, content=sent, params=_signed(relay_settings, "POST", EVENTS, signed)
    )
    _assert_problem(response, 401, "invalid-signature")
    assert listener.events == []


@pytest.mark.parametrize("skew", [-601, 601, -3600])
async def test_stale_or_future_timestamp_is_401(
    http: httpx.AsyncClient, relay_settings: Settings, skew: int
) -> None:
    response = await _post(
        http,
        relay_settings,
        EVENTS,
        {"name": "e", "channel": "news", "data": "x"},
        timestamp=int(time.time()) + skew,
    )
    body = _assert_problem(response, 401, "invalid-signature")
    assert "auth_timestamp" in body["detail"]


async def test_timestamp_within_the_window_is_accepted(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    response = await _post(
        http,
        relay_settings,
        EVENTS,
        {"name": "e", "channel": "news", "data": "x"},
        timestamp=int(time.time()) - 500,
    )
    assert response.status_code == 200


@pytest.mark.parametrize("drop", ["auth_signature", "auth_key", "auth_version", "auth_timestamp"])
async def test_missing_auth_parameters_are_401(
    http: httpx.AsyncClient, relay_settings: Settings, drop: str
) -> None:
    body = orjson.dumps({"name": "e", "channel": "news", "data": "x"})
    params = _signed(relay_settings, "POST", EVENTS, body)
    del params[drop]
    response = await http.post(EVENTS, content=body, params=params)
    _assert_problem(response, 401, "invalid-signature")


async def test_api_key_is_not_a_pusher_signature(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    response = await http.post(
        EVENTS,
        json={"name": "e", "channel": "news", "data": "x"},
        headers={"X-API-Key": relay_api_key},
    )
    _assert_problem(response, 401, "invalid-signature")


async def test_channel_info_for_a_public_channel(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    path = "/apps/4242/channels/news"
    counted = {"info": "subscription_count"}
    empty = await http.get(path, params=_signed(relay_settings, "GET", path, params=counted))
    assert empty.status_code == 200
    assert empty.json() == {"occupied": False, "subscription_count": 0}
    relay_listen("news")
    relay_listen("news")
    busy = await http.get(path, params=_signed(relay_settings, "GET", path, params=counted))
    assert busy.json() == {"occupied": True, "subscription_count": 2}
    # Without info, Pusher answers `occupied` only.
    bare = await http.get(path, params=_signed(relay_settings, "GET", path))
    assert bare.json() == {"occupied": True}


async def test_channel_info_and_users_for_a_presence_channel(
    http: httpx.AsyncClient,
    relay_settings: Settings,
    relay_provider: LocalProvider,
    relay_listen: Callable[..., Recorder],
) -> None:
    hub = relay_provider.hub
    hub.subscribe(relay_listen(), "presence-room", PresenceData("alice", {"name": "Alice"}))
    hub.subscribe(relay_listen(), "presence-room", PresenceData("alice", {"name": "Alice"}))
    hub.subscribe(relay_listen(), "presence-room", PresenceData("bob", {}))
    path = "/apps/4242/channels/presence-room"
    info = await http.get(
        path, params=_signed(relay_settings, "GET", path, params={"info": "user_count"})
    )
    assert info.status_code == 200, info.text
    assert info.json() == {"occupied": True, "user_count": 2}
    both = {"info": "user_count,subscription_count"}
    info = await http.get(path, params=_signed(relay_settings, "GET", path, params=both))
    assert info.json() == {"occupied": True, "subscription_count": 3, "user_count": 2}
    users_path = path + "/users"
    users = await http.get(users_path, params=_signed(relay_settings, "GET", users_path))
    assert users.status_code == 200
    assert users.json() == {"users": [{"id": "alice"}, {"id": "bob"}]}


async def test_official_sdk_queries_are_accepted(
    http: httpx.AsyncClient,
    relay_settings: Settings,
    relay_provider: LocalProvider,
    relay_listen: Callable[..., Recorder],
) -> None:
    relay_provider.hub.subscribe(relay_listen(), "presence-room", PresenceData("alice", {}))
    sdk = _sdk(relay_settings)
    info = sdk.channel_info.make_request("presence-room", ["user_count"])
    response = await http.get(info.signed_path)
    assert response.status_code == 200, response.text
    assert response.json()["user_count"] == 1
    users = sdk.users_info.make_request("presence-room")
    response = await http.get(users.signed_path)
    assert response.json() == {"users": [{"id": "alice"}]}


async def test_channel_queries_need_a_signature(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    path = "/apps/4242/channels/news"
    unsigned = await http.get(path)
    _assert_problem(unsigned, 401, "invalid-signature")
    params = _signed(relay_settings, "GET", path)
    params["extra"] = "added-after-signing"
    tampered = await http.get(path, params=params)
    _assert_problem(tampered, 401, "invalid-signature")
    other_path = "/apps/4242/channels/other"
    replayed = await http.get(other_path, params=_signed(relay_settings, "GET", path))
    _assert_problem(replayed, 401, "invalid-signature")


async def test_channel_query_for_a_malformed_channel_is_400(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    path = "/apps/4242/channels/" + "x" * 200
    response = await http.get(path, params=_signed(relay_settings, "GET", path))
    _assert_problem(response, 400, "invalid-channel")


async def test_the_publishing_routes_are_served_by_front_at_this_apps_path(
    relay_app: Any, relay_settings: Settings
) -> None:
    # Below FastAPI's routing (app/direct.py); any other path goes through FastAPI (the 404 above).
    direct = relay_app.front.direct
    for route in ("events", "batch_events"):
        assert ("POST", f"/apps/{relay_settings.app_id}/{route}") in direct
    assert not any(path.startswith("/apps/{") for _, path in direct)
