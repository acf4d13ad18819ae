"""The whole Pusher HTTP API (app/pusher_http.py): info on triggers, GET channels, sending to and
terminating users, and Pusher's limits and refusals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest

from app.main import create_app
from core.provider import PresenceData
from core.settings import Settings
from providers.pusherproto import signing
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from collections.abc import Callable

    from providers.local.provider import LocalProvider
    from tests.unit.conftest import Recorder

PROBLEM = "urn:realtime-relay:problem:"
APP = "/apps/4242"
EVENTS = f"{APP}/events"
BATCH = f"{APP}/batch_events"


def _params(settings: Settings, method: str, path: str, body: bytes, **query: str) -> Any:
    secret = settings.app_secret.get_secret_value()
    return signing.sign_request(settings.app_key, secret, method, path, body=body, params=query)


async def _post(
    http: httpx.AsyncClient, settings: Settings, path: str, payload: Any
) -> httpx.Response:
    body = orjson.dumps(payload)
    return await http.post(path, content=body, params=_params(settings, "POST", path, body))


async def _get(
    http: httpx.AsyncClient, settings: Settings, path: str, **query: str
) -> httpx.Response:
    return await http.get(path, params=_params(settings, "GET", path, b"", **query))


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + slug
    return body


# -- info on triggers ------------------------------------------------------------------------
async def test_trigger_with_info_answers_each_channels_attributes(
    http: httpx.AsyncClient,
    relay_settings: Settings,
    relay_provider: LocalProvider,
    relay_listen: Callable[..., Recorder],
) -> None:
    relay_listen("news", "news")
    relay_listen("news")
    relay_provider.hub.subscribe(relay_listen(), "presence-room", PresenceData("alice", {}))
    response = await _post(
        http,
        relay_settings,
        EVENTS,
        {
            "name": "e",
            "channels": ["news", "presence-room", "empty"],
            "data": "x",
            "info": "subscription_count,user_count",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "channels": {
            "news": {"subscription_count": 2},
            "presence-room": {"subscription_count": 1, "user_count": 1},
            "empty": {"subscription_count": 0},
        }
    }


async def test_batch_with_info_answers_per_event(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    relay_listen("a")
    batch = [
        {"channel": "a", "name": "one", "data": "1", "info": "subscription_count"},
        {"channel": "b", "name": "two", "data": "2"},
        {"channel": "a", "name": "three", "data": "3", "info": "user_count"},
    ]
    response = await _post(http, relay_settings, BATCH, {"batch": batch})
    assert response.status_code == 200, response.text
    assert response.json() == {"batch": [{"subscription_count": 1}, {}, {}]}


async def test_unknown_info_attribute_is_400_and_publishes_nothing(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    response = await _post(
        http, relay_settings, EVENTS, {"name": "e", "channel": "news", "data": "x", "info": "x"}
    )
    _problem(response, 400, "invalid-request")
    bad_batch = {"batch": [{"channel": "news", "name": "e", "data": "x", "info": 3}]}
    body = _problem(await _post(http, relay_settings, BATCH, bad_batch), 400, "invalid-request")
    assert body["item"] == 0
    assert listener.events == []


# -- GET channels -----------------------------------------------------------------------------
async def test_channels_lists_occupied_channels_by_prefix(
    http: httpx.AsyncClient,
    relay_settings: Settings,
    relay_provider: LocalProvider,
    relay_listen: Callable[..., Recorder],
) -> None:
    relay_listen("news", "sport")
    hub = relay_provider.hub
    hub.subscribe(relay_listen(), "presence-a", PresenceData("alice", {}))
    hub.subscribe(relay_listen(), "presence-a", PresenceData("bob", {}))
    path = f"{APP}/channels"
    everything = await _get(http, relay_settings, path)
    assert everything.status_code == 200, everything.text
    assert everything.json() == {"channels": {"news": {}, "presence-a": {}, "sport": {}}}
    presence = await _get(
        http, relay_settings, path, filter_by_prefix="presence-", info="user_count"
    )
    assert presence.json() == {"channels": {"presence-a": {"user_count": 2}}}


@pytest.mark.parametrize("prefix", [None, "private-", "pres"])
async def test_channels_user_count_needs_a_presence_prefix(
    http: httpx.AsyncClient, relay_settings: Settings, prefix: str | None
) -> None:
    query = {"info": "user_count"} | ({} if prefix is None else {"filter_by_prefix": prefix})
    response = await _get(http, relay_settings, f"{APP}/channels", **query)
    _problem(response, 400, "invalid-request")


# -- GET channels/{name} ----------------------------------------------------------------------
async def test_channel_user_count_is_for_presence_channels_only(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    response = await _get(http, relay_settings, f"{APP}/channels/news", info="user_count")
    _problem(response, 400, "invalid-request")


async def test_channel_cache_attribute_is_omitted_while_nothing_is_kept(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    response = await _get(http, relay_settings, f"{APP}/channels/cache-prices", info="cache")
    assert response.status_code == 200, response.text
    assert response.json() == {"occupied": False}


async def test_channel_cache_attribute_holds_the_last_published_event_and_its_ttl(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    for price in (1, 2):
        body = {"name": "price", "channel": "cache-prices", "data": f'{{"eur":{price}}}'}
        assert (await _post(http, relay_settings, EVENTS, body)).status_code == 200
    response = await _get(http, relay_settings, f"{APP}/channels/cache-prices", info="cache")
    assert response.status_code == 200, response.text
    cache = response.json()["cache"]
    assert orjson.loads(cache["data"]) == {"event": "price", "data": '{"eur":2}'}
    assert 30 * 60 - 5 <= cache["ttl"] <= 30 * 60


async def test_users_of_a_channel_that_is_not_presence_is_400(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    response = await _get(http, relay_settings, f"{APP}/channels/news/users")
    _problem(response, 400, "invalid-channel")


# -- users --------------------------------------------------------------------------------------
async def test_server_to_user_channel_sends_to_the_user(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    user = relay_listen("#server-to-user-alice")
    response = await _post(
        http,
        relay_settings,
        EVENTS,
        {"name": "hello", "channels": ["#server-to-user-alice"], "data": '{"a":1}'},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert user.events == [("#server-to-user-alice", "hello", '{"a":1}')]


async def test_server_to_user_channel_with_other_channels_is_400(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    user = relay_listen("#server-to-user-alice", "news")
    mixed = {"name": "e", "channels": ["#server-to-user-alice", "news"], "data": "x"}
    _problem(await _post(http, relay_settings, EVENTS, mixed), 400, "invalid-channel")
    batch = {"batch": [{"name": "e", "channel": "#server-to-user-alice", "data": "x"}]}
    _problem(await _post(http, relay_settings, BATCH, batch), 400, "invalid-channel")
    assert user.events == []


@pytest.mark.parametrize("prefix", [APP, ""])
async def test_terminate_connections_on_both_sdk_paths(
    http: httpx.AsyncClient, relay_settings: Settings, prefix: str
) -> None:
    path = f"{prefix}/users/alice/terminate_connections"
    response = await _post(http, relay_settings, path, {})
    assert response.status_code == 200, response.text
    assert response.json() == {}


@pytest.mark.parametrize("prefix", [APP, ""])
async def test_terminate_connections_needs_the_apps_signature(
    http: httpx.AsyncClient, relay_settings: Settings, prefix: str
) -> None:
    path = f"{prefix}/users/alice/terminate_connections"
    body = b"{}"
    params = _params(relay_settings, "POST", path, body)
    params["auth_signature"] = "0" * 64
    _problem(await http.post(path, content=body, params=params), 401, "invalid-signature")
    unsigned = await http.post(path, content=body)
    _problem(unsigned, 401, "invalid-signature")


async def test_terminate_connections_of_another_app_is_404(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    path = "/apps/9999/users/alice/terminate_connections"
    _problem(await _post(http, relay_settings, path, {}), 404, "not-found")


# -- Pusher's limits ----------------------------------------------------------------------------
async def test_pushers_limits_hold_whatever_the_relays_settings_say(
    http: httpx.AsyncClient, relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    one = {"name": "e", "channel": "news", "data": "x"}
    eleven = {"batch": [one | {"channel": "news"}] * 11}
    body = _problem(await _post(http, relay_settings, BATCH, eleven), 400, "too-many-items")
    assert body["limit"] == 10
    many = {"name": "e", "channels": [f"c{i}" for i in range(101)], "data": "x"}
    body = _problem(await _post(http, relay_settings, EVENTS, many), 400, "too-many-items")
    assert body["limit"] == 100
    big = one | {"data": "x" * 10_241}
    body = _problem(await _post(http, relay_settings, EVENTS, big), 413, "payload-too-large")
    assert body["limit"] == 10_240
    long_channel = one | {"channel": "c" * 165}
    _problem(await _post(http, relay_settings, EVENTS, long_channel), 400, "invalid-channel")
    long_name = one | {"name": "e" * 201}
    _problem(await _post(http, relay_settings, EVENTS, long_name), 400, "invalid-event-name")
    fits = one | {"data": "x" * 10_240, "name": "e" * 200}
    assert (await _post(http, relay_settings, EVENTS, fits)).status_code == 200
    assert len(listener.events) == 1


# -- app ids as soketi takes them ---------------------------------------------------------------
async def test_an_app_id_with_letters_and_dashes_serves_the_api(
    relay_settings: Settings, relay_listen: Callable[..., Recorder]
) -> None:
    settings = Settings(**(UNIT_SETTINGS | {"app_id": "app-id_2"}))
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        response = await _post(
            client, settings, "/apps/app-id_2/events", {"name": "e", "channel": "a", "data": "x"}
        )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("app_id", ["", "app id", "app/id", "a" * 65, "app.id"])
def test_app_ids_soketi_would_refuse_are_refused_at_start_up(app_id: str) -> None:
    with pytest.raises(ValueError, match="app_id"):
        Settings(**(UNIT_SETTINGS | {"app_id": app_id}))
