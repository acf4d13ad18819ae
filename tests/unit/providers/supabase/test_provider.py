"""The relay's HTTP interface on RELAY_PROVIDER=supabase, Realtime's HTTP replaced by a fake."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import orjson
import pytest

from app.main import create_app
from app.relay import Relay
from core.policy import Policy
from core.settings import Settings
from providers.supabase.provider import SupabaseProvider, broadcast_payload, topic_is_private
from providers.supabase.settings import SupabaseSettings
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

PROBLEM = "urn:realtime-relay:problem:"
SECRET = "provider-test-supabase-jwt-secret-0123456789"
SERVICE_KEY = "provider-test-service-role-key"
API_KEY = str(UNIT_SETTINGS["api_keys"])
CLAIMS_POLICY = """
[[rule]]
pattern = "private-team-{team}"
subscribe = ["claim:teams={team}"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
publish = ["backend"]
"""


class Realtime:
    """Records broadcast calls and answers 202."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Realtime's broadcast endpoint, accepting everything."""
        self.bodies.append(orjson.loads(request.content))
        return httpx.Response(202)


@pytest.fixture
def realtime() -> Realtime:
    """The fake's record."""
    return Realtime()


@pytest.fixture
def relay_settings() -> Settings:
    """The unit settings on the supabase provider."""
    return Settings(**{**UNIT_SETTINGS, "provider": "supabase"})


def _supabase(realtime: Realtime, **changes: Any) -> SupabaseProvider:
    settings = SupabaseSettings(
        url="https://ref.supabase.co", service_role_key=SERVICE_KEY, jwt_secret=SECRET, **changes
    )
    http = httpx.AsyncClient(base_url=settings.url, transport=httpx.MockTransport(realtime.handler))
    return SupabaseProvider(settings, http=http)


async def _client(relay: Relay) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(relay=relay))
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        yield client
    await relay.aclose()


@pytest.fixture
async def http(relay_settings: Settings, realtime: Realtime) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the supabase provider with the default policy."""
    async for client in _client(Relay.build(relay_settings, provider=_supabase(realtime))):
        yield client


def _bearer(settings: Settings, user_id: str, **claims: Any) -> dict[str, str]:
    secret = settings.jwt_secret
    assert secret is not None
    now = int(time.time())
    token = jwt.encode(
        {"sub": user_id, "iat": now, "exp": now + 3600, **claims},
        secret.get_secret_value(),
        algorithm="HS256",
    )
    return {"Authorization": f"Bearer {token}"}


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + slug
    return body


@pytest.mark.parametrize("who", ["backend", "user"])
async def test_presence_members_answer_501_never_an_empty_list(
    http: httpx.AsyncClient, relay_settings: Settings, who: str
) -> None:
    headers = {"X-API-Key": API_KEY} if who == "backend" else _bearer(relay_settings, "alice")
    response = await http.get("/v1/channels/presence-x/members", headers=headers)
    body = _problem(response, 501, "not-supported")
    assert "presenceState" in body["detail"]
    assert "members" not in body


async def test_occupancy_is_not_supported_and_history_is_the_relays(
    http: httpx.AsyncClient,
) -> None:
    headers = {"X-API-Key": API_KEY}
    _problem(await http.get("/v1/channels/news", headers=headers), 501, "not-supported")
    # Supabase keeps no history: the relay keeps it in its store where the policy grants it.
    answer = await http.get("/v1/channels/news/messages", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"channel": "news", "messages": [], "next": None}


async def test_auth_token_mints_a_supabase_jwt_for_a_user(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    for method in ("GET", "POST"):
        response = await http.request(method, "/auth/token", headers=_bearer(relay_settings, "al"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 600
        claims = jwt.decode(
            body["access_token"], SECRET, algorithms=["HS256"], audience="authenticated"
        )
        assert claims["sub"] == "al"
        assert claims["role"] == "authenticated"
        assert claims["iss"] == "https://ref.supabase.co/auth/v1"
        assert claims["exp"] == body["expires_at"]


async def test_auth_token_needs_no_channel_list(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    # RLS decides each topic at join time, so a token names no channels and `channels` is moot.
    headers = _bearer(relay_settings, "al")
    plain = (await http.get("/auth/token", headers=headers)).json()
    listed = await http.get("/auth/token?channels=presence-room,private-x", headers=headers)
    assert listed.status_code == 200, listed.text
    claims = jwt.decode(
        listed.json()["access_token"], SECRET, algorithms=["HS256"], audience="authenticated"
    )
    assert set(claims) == set(
        jwt.decode(plain["access_token"], SECRET, algorithms=["HS256"], audience="authenticated")
    )
    assert "channels" not in claims


async def test_auth_token_carries_the_claims_the_policy_reads(
    relay_settings: Settings, realtime: Realtime
) -> None:
    policy = Policy.from_toml(CLAIMS_POLICY, source="claims.toml")
    relay = Relay.build(relay_settings, provider=_supabase(realtime), policy=policy)
    async for client in _client(relay):
        headers = _bearer(relay_settings, "bo", teams=["red", True], email="bo@example.com")
        body = (await client.get("/auth/token", headers=headers)).json()
    claims = jwt.decode(
        body["access_token"], SECRET, algorithms=["HS256"], audience="authenticated"
    )
    assert claims["teams"] == ["red"]
    assert "email" not in claims


async def test_auth_token_refuses_anonymous_and_backends(http: httpx.AsyncClient) -> None:
    anonymous = _problem(await http.get("/auth/token"), 401, "unauthenticated")
    assert "anon key" in anonymous["detail"]
    backend = await http.get("/auth/token", headers={"X-API-Key": API_KEY})
    _problem(backend, 403, "forbidden")


async def test_publish_goes_out_as_one_broadcast_call(
    http: httpx.AsyncClient, realtime: Realtime
) -> None:
    response = await http.post(
        "/v1/events",
        json={"name": "msg", "channels": ["news", "private-room"], "data": {"n": 1}},
        headers={"X-API-Key": API_KEY},
    )
    assert response.status_code == 200, response.text
    assert len(realtime.bodies) == 1
    sent = realtime.bodies[0]["messages"]
    assert [(m["topic"], m["private"], m["payload"]) for m in sent] == [
        ("news", False, {"n": 1}),
        ("private-room", True, {"n": 1}),
    ]
    ids = [m["id"] for m in sent]
    assert ids == [r["id"] for r in response.json()["receipts"]]
    assert len(set(ids)) == 2


async def test_encrypted_channels_and_oversized_data_are_refused_before_supabase(
    relay_settings: Settings, realtime: Realtime
) -> None:
    relay = Relay.build(relay_settings, provider=_supabase(realtime, max_payload_bytes=1024))
    async for client in _client(relay):
        headers = {"X-API-Key": API_KEY}
        encrypted = {"name": "m", "channel": "private-encrypted-x", "data": "x"}
        _problem(
            await client.post("/v1/events", json=encrypted, headers=headers), 400, "invalid-channel"
        )
        big = {"name": "m", "channel": "news", "data": "x" * 1100}
        _problem(
            await client.post("/v1/events", json=big, headers=headers), 413, "payload-too-large"
        )
    assert realtime.bodies == []


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        ('{"a": 1}', {"a": 1}),
        ("hello", {"data": "hello"}),
        ("[1, 2]", {"data": "[1, 2]"}),
        ("42", {"data": "42"}),
        ('"quoted"', {"data": '"quoted"'}),
    ],
)
def test_payload_is_always_an_object(data: str, payload: dict[str, Any]) -> None:
    assert broadcast_payload(data) == payload


@pytest.mark.parametrize(
    ("channel", "private"),
    [("news", False), ("private-x", True), ("presence-x", True), ("private-encrypted-x", True)],
)
def test_private_topics(channel: str, private: bool) -> None:
    assert topic_is_private(channel) is private


def test_from_settings_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_URL", "https://ref.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY)
    monkeypatch.setenv("SUPABASE_JWT_SECRET", SECRET)
    monkeypatch.setenv("SUPABASE_MAX_MESSAGES_PER_CALL", "25")
    made = SupabaseProvider.from_settings(Settings(**{**UNIT_SETTINGS, "provider": "supabase"}))
    assert made.name == "supabase"
    assert made.settings.max_messages_per_call == 25
    assert made.limits.supports_encrypted_channels is False
