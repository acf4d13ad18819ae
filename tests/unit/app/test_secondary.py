"""A relay with RELAY_SECONDARY_PROVIDER, through its HTTP routes: Pusher (a fake that checks
every signature) as the primary, the relay's own local provider as the secondary."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from app.main import create_app
from app.relay import Relay
from core.errors import ConfigurationError
from core.settings import Settings, read_env
from providers.pair import ProviderPair
from providers.pusher.provider import PusherProvider
from providers.pusherproto import signing
from providers.registry import create_provider, load_settings_with_provider
from tests.servers import serve
from tests.unit.app.test_metrics import scrape, value
from tests.unit.conftest import UNIT_SETTINGS, Recorder
from tests.unit.providers.pusher.test_api import KEY, SECRET, FakePusher, make_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from providers.local.provider import LocalProvider

API_KEY = str(UNIT_SETTINGS["api_keys"])
APP_SECRET = str(UNIT_SETTINGS["app_secret"])
BACKEND = {"X-API-Key": API_KEY}


class Pusher:
    """The fake Pusher's answers: up, or down (503)."""

    def __init__(self) -> None:
        self.up = True

    def __call__(self, call: Any) -> httpx.Response:
        return httpx.Response(200, json={}) if self.up else httpx.Response(503, text="down")


@pytest.fixture
def pusher_state() -> Pusher:
    return Pusher()


@pytest.fixture
def fake(pusher_state: Pusher) -> FakePusher:
    return FakePusher(reply=pusher_state)


@pytest.fixture
async def paired_app(
    request: pytest.FixtureRequest, fake: FakePusher, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    mode = getattr(request, "param", "mirror")
    for name in list(os.environ):
        if name.startswith(("RELAY_", "PUSHER_")):
            monkeypatch.delenv(name)
    settings = Settings(
        **UNIT_SETTINGS,
        provider="pusher",
        secondary_provider="local",
        secondary_mode=mode,
        console="on",
    )
    pusher_settings = make_settings(max_attempts=1)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(fake), base_url=pusher_settings.base_url
    ) as client:
        from providers.local.provider import LocalProvider

        pair = ProviderPair(
            PusherProvider(pusher_settings, http=client),
            LocalProvider(settings),
            mode=settings.secondary_mode,
            failures=2,
        )
        yield create_app(relay=Relay.build(settings, provider=pair), metrics=True)


@pytest.fixture
async def client(paired_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=paired_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
        yield http


def local_of(app: FastAPI) -> LocalProvider:
    found: Any = app.state.relay.provider.part("local")
    return found  # type: ignore[no-any-return]


def test_the_secondary_must_differ_from_the_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_PROVIDER", "local")
    monkeypatch.setenv("RELAY_SECONDARY_PROVIDER", "local")
    with pytest.raises(ConfigurationError, match="RELAY_SECONDARY_PROVIDER"):
        read_env(Settings)


def test_the_secondarys_missing_credentials_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("RELAY_", "PUSHER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RELAY_SECONDARY_PROVIDER", "pusher")
    with pytest.raises(ConfigurationError) as refused:
        load_settings_with_provider()
    assert any("PUSHER_" in p for p in refused.value.problems)


def test_the_registry_builds_a_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHER_APP_ID", "4242")
    monkeypatch.setenv("PUSHER_KEY", KEY)
    monkeypatch.setenv("PUSHER_SECRET", SECRET)
    settings = Settings(**UNIT_SETTINGS, secondary_provider="pusher", secondary_mode="mirror")
    pair = create_provider(settings)
    assert isinstance(pair, ProviderPair)
    assert [p.name for p in pair.parts] == ["local", "pusher"]
    assert pair.mode == "mirror"


async def test_health_names_both_and_each_circuit(client: httpx.AsyncClient) -> None:
    answer = (await client.get("/health")).json()
    assert answer["provider"] == "pusher"
    assert answer["secondary"] == "local"
    assert answer["mode"] == "mirror"
    assert answer["circuits"] == {"pusher": "closed", "local": "closed"}


async def test_a_client_names_the_provider_that_signs_its_channel(
    client: httpx.AsyncClient, paired_app: FastAPI
) -> None:
    token = paired_app.state.relay.settings
    from core.tokens import mint_dev_token

    user = {"Authorization": f"Bearer {mint_dev_token(token, user_id='ann')}"}
    form = {"socket_id": "1.2", "channel_name": "private-user-ann"}
    default = await client.post("/auth/channel", data=form, headers=user)
    assert default.status_code == 200, default.text
    assert default.json()["auth"] == signing.channel_auth(
        KEY, SECRET, socket_id="1.2", channel="private-user-ann"
    )
    own = await client.post("/auth/channel?provider=local", data=form, headers=user)
    assert own.json()["auth"] == signing.channel_auth(
        "unit-key", APP_SECRET, socket_id="1.2", channel="private-user-ann"
    )
    in_body = await client.post("/auth/channel", data={**form, "provider": "local"}, headers=user)
    assert in_body.json() == own.json()
    for query, body in (("?provider=ably", {}), ("?provider=local", {"provider": "pusher"})):
        refused = await client.post(f"/auth/channel{query}", data={**form, **body}, headers=user)
        assert refused.status_code == 400, refused.text
        assert refused.json()["type"].endswith(":invalid-request")
    for query in ("?provider=local&provider=pusher", "?provider=local&provider=local"):
        twice = await client.post(f"/auth/channel{query}", data=form, headers=user)
        assert twice.status_code == 400, query
    both = await client.post(  # the same name in the query and the body: one choice
        "/auth/channel?provider=local", data={**form, "provider": "local"}, headers=user
    )
    assert both.json() == own.json()


async def test_a_mirrored_publish_says_what_each_took_and_is_replayed_once(
    client: httpx.AsyncClient, paired_app: FastAPI, fake: FakePusher
) -> None:
    heard = Recorder("9999.1")
    local_of(paired_app).hub.subscribe(heard, "news")
    event = {"name": "ev", "channels": ["news"], "data": "hi"}
    headers = {**BACKEND, "Idempotency-Key": "k-1"}
    first = await client.post("/v1/events", json=event, headers=headers)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["providers"] == {"pusher": {"accepted": 1}, "local": {"accepted": 1}}
    assert {r["provider"] for r in answer["receipts"]} == {"pusher", "local"}
    again = await client.post("/v1/events", json=event, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == answer
    assert len(fake.calls) == 1
    assert heard.events == [("news", "ev", "hi")]
    samples = await scrape(client, API_KEY)
    assert value(samples, "relay_published_messages_total", provider="pusher") == 1
    assert value(samples, "relay_published_messages_total", provider="local") == 1
    assert value(samples, "relay_circuit_breaker_state", provider="pusher") == 0


async def test_a_mirrored_publish_the_primary_missed_is_answered_2xx_naming_it(
    client: httpx.AsyncClient, paired_app: FastAPI, pusher_state: Pusher
) -> None:
    pusher_state.up = False
    heard = Recorder("9999.1")
    local_of(paired_app).hub.subscribe(heard, "news")
    answer = await client.post(
        "/v1/events", json={"name": "ev", "channels": ["news"], "data": "x"}, headers=BACKEND
    )
    assert answer.status_code == 200
    assert answer.json()["providers"]["pusher"] == {"accepted": 0, "failed": "provider-error"}
    assert answer.json()["provider"] == "local"
    assert heard.events == [("news", "ev", "x")]
    samples = await scrape(client, API_KEY)
    assert value(samples, "relay_mirror_missed_messages_total", provider="pusher") == 1
    assert value(samples, "relay_mirror_missed_messages_total", provider="local") == 0
    assert value(samples, "relay_published_messages_total", provider="local") == 1


@pytest.mark.parametrize("paired_app", ["failover"], indirect=True)
async def test_failover_goes_to_the_secondary_and_metrics_say_so(
    client: httpx.AsyncClient, paired_app: FastAPI, pusher_state: Pusher, fake: FakePusher
) -> None:
    pusher_state.up = False
    heard = Recorder("9999.1")
    local_of(paired_app).hub.subscribe(heard, "news")
    for n in range(3):
        answer = await client.post(
            "/v1/events", json={"name": "ev", "channels": ["news"], "data": n}, headers=BACKEND
        )
        assert answer.status_code == 200
        assert answer.json()["provider"] == "local"
        assert "providers" in answer.json()
    assert len(fake.calls) == 2  # then the primary's breaker opened
    assert len(heard.events) == 3
    samples = await scrape(client, API_KEY)
    assert value(samples, "relay_circuit_breaker_state", provider="pusher") == 2
    assert value(samples, "relay_published_messages_total", provider="local") == 3
    assert value(samples, "relay_published_messages_total", provider="pusher") == 0
    health = (await client.get("/health")).json()
    assert health["circuits"]["pusher"] == "open"
    assert health["circuit"] == "closed"  # the relay as a whole still delivers


async def test_the_local_secondary_serves_its_sockets_and_the_pusher_api(
    paired_app: FastAPI, client: httpx.AsyncClient
) -> None:
    socket = "/app/unit-key?protocol=7"
    async with serve(paired_app) as server, connect(server.ws_url + socket) as ws:
        established = orjson.loads(await ws.recv())
        assert established["event"] == "pusher:connection_established"
        await ws.send(orjson.dumps({"event": "pusher:subscribe", "data": {"channel": "news"}}))
        assert orjson.loads(await ws.recv())["event"] == "pusher_internal:subscription_succeeded"
        path = "/apps/4242/channels"
        params = signing.sign_request("unit-key", APP_SECRET, "GET", path)
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            listed = await http.get(path, params=params)
        assert listed.status_code == 200, listed.text
        assert "news" in listed.json()["channels"]
    refused = await client.post("/v1/webhooks/ably", content=b"{}")
    assert refused.status_code == 404
    assert "'pusher' and 'local'" in refused.json()["detail"]


async def test_the_console_watches_and_signs_for_the_local_secondary(
    client: httpx.AsyncClient, paired_app: FastAPI
) -> None:
    body = {"socket_id": "123.456", "channel_name": "private-user-42"}
    answer = await client.post("/console/api/auth", json=body, headers=BACKEND)
    assert answer.status_code == 200, answer.text
    assert answer.json()["auth"] == signing.channel_auth(
        "unit-key", APP_SECRET, socket_id="123.456", channel="private-user-42"
    )
    local_of(paired_app).hub.subscribe(Recorder("9999.1"), "news")
    listed = (await client.get("/console/api/channels", headers=BACKEND)).json()
    assert listed == {"channels": [{"channel": "news", "subscriptions": 1, "users": None}]}
