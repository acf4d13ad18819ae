"""Fixtures of the forgery suite: the relay in-process, once per provider the registry can build.

Each provider is built from dummy credentials whose hosts are 127.0.0.1 ports nobody listens on.
Its `publish` is replaced by a recorder (the local provider's still delivers to its hub), so a
forged request that got through is seen and nothing ever leaves the machine; the store records
every write (idempotency records, anything kept for presence); on the local provider a listener
sits on the channels the forgeries aim at. `Target.assert_untouched()` checks all three.

A provider whose module does not exist yet is not built: `test_registry_builds_or_refuses` checks
that the registry refuses it with a ConfigurationError (its id says `<name>-not-built`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import socket
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from app.main import create_app
from app.relay import Relay
from core.errors import PROBLEM_CONTENT_TYPE, RelayError
from core.identity import Authenticator
from core.policy import Policy
from core.provider import Receipt
from core.settings import Settings
from core.stores.memory import MemoryStore
from providers.local.provider import LocalProvider
from providers.registry import PROVIDERS, provider_class
from tests import servers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from fastapi import FastAPI

    from core.provider import Message, Provider
    from providers.local.hub import Delivery

APP_ID = "5150"
APP_KEY = "forge-key"
APP_SECRET = "forge-app-secret-0123456789abcdef"
JWT_SECRET = "forge-jwt-secret-0123456789abcdef-0123456789"
API_KEY = "forge-api-key-0123456789abcdef"
ISSUER = "https://issuer.forge.test/"
AUDIENCE = "realtime-relay-forge"
# Never fetched over a network: the Authenticator's HTTP client is an httpx.MockTransport.
JWKS_URL = "http://127.0.0.1:9/.well-known/jwks.json"
KID = "forge-rsa-1"

PUSHER_APP_ID = "5151"
PUSHER_KEY = "forge-pusher-key"
PUSHER_SECRET = "forge-pusher-secret-0123456789abcdef"
ABLY_KEY_NAME = "forgeapp.forgekey"
ABLY_SECRET = "forge-ably-secret-0123456789abcdef"
SUPABASE_SERVICE_KEY = "forge-supabase-service-role-key-0123456789"
SUPABASE_JWT_SECRET = "forge-supabase-jwt-secret-0123456789abcdef"

SECRETS = (APP_SECRET, JWT_SECRET, API_KEY, PUSHER_SECRET, ABLY_SECRET, SUPABASE_JWT_SECRET)
PROBLEM = "application/problem+json"
PROBLEM_PREFIX = "urn:realtime-relay:problem:"
SOCKET_ID = "123.456"

# The channels forgeries aim at; on the local provider a listener sits on each.
WATCHED = ("private-user-alice", "private-user-bob", "presence-room", "open-forge")
# Environment prefixes of the relay and of every provider: cleared, then set per provider.
ENV_PREFIXES = ("RELAY_", "PUSHER_", "ABLY_", "SUPABASE_", "APIGW_", "AWS_")

# A channel any signed-in user may publish to, so that a forged user token that got through
# would publish: the forgery suite's rule comes first, then the built-in default policy.
OPEN_RULE = """
[[rule]]
pattern = "open-{name}"
subscribe = ["anyone"]
publish = ["user", "backend"]
client_events = []
"""

BASE_SETTINGS: dict[str, Any] = {
    "env": "test",
    "app_id": APP_ID,
    "app_key": APP_KEY,
    "app_secret": APP_SECRET,
    "jwt_secret": JWT_SECRET,
    "jwks_url": JWKS_URL,
    "jwt_issuer": ISSUER,
    "jwt_audience": AUDIENCE,
    "api_keys": API_KEY,
    # Forgeries come in bulk from one address: a 429 would hide the answer under test.
    "rate_limits": False,
    "activity_timeout_seconds": 30,
}


def free_port() -> int:
    """A 127.0.0.1 port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def provider_env(name: str, dead_port: int) -> dict[str, str]:
    """Dummy credentials for a provider; every host is 127.0.0.1 on a port nobody listens on."""
    table: dict[str, dict[str, str]] = {
        "local": {},
        "pusher": {
            "PUSHER_APP_ID": PUSHER_APP_ID,
            "PUSHER_KEY": PUSHER_KEY,
            "PUSHER_SECRET": PUSHER_SECRET,
            "PUSHER_HOST": "127.0.0.1",
            "PUSHER_PORT": str(dead_port),
            "PUSHER_USE_TLS": "false",
            "PUSHER_TIMEOUT_SECONDS": "1",
        },
        "ably": {
            "ABLY_API_KEY": f"{ABLY_KEY_NAME}:{ABLY_SECRET}",
            "ABLY_REST_HOST": "127.0.0.1",
            "ABLY_REST_PORT": str(dead_port),
            "ABLY_TLS": "false",
        },
        "supabase": {
            "SUPABASE_URL": f"http://127.0.0.1:{dead_port}",
            "SUPABASE_SERVICE_ROLE_KEY": SUPABASE_SERVICE_KEY,
            "SUPABASE_JWT_SECRET": SUPABASE_JWT_SECRET,
        },
        "apigateway": {
            "APIGW_ENDPOINT": f"http://127.0.0.1:{dead_port}",
            "APIGW_TABLE_PREFIX": "forge-relay",
            "APIGW_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{dead_port}",
            # boto3's clients (core/aws.py) take the region from the environment as on Lambda;
            # without it, a suite run alone has none (a run after others finds a cached client).
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        "appsync": {
            "APPSYNC_ENDPOINT": f"http://127.0.0.1:{dead_port}",
            "APPSYNC_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "forge-access-key",
            "AWS_SECRET_ACCESS_KEY": "forge-secret-key",
        },
    }
    if name not in table:
        raise AssertionError(
            f"provider {name!r} is in the registry but tests/security/conftest.py has no dummy "
            "credentials for it: add them to provider_env()"
        )
    return table[name]


# -- which providers exist ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Availability:
    """Whether the registry could import a provider, and if not, what it said."""

    name: str
    built: bool
    error: BaseException | None = None


def availability(name: str) -> Availability:
    """Ask the registry; any failure is kept (a ConfigurationError is the expected one)."""
    try:
        provider_class(name)
    except Exception as exc:  # a half-written module must not break collection
        return Availability(name, built=False, error=exc)
    return Availability(name, built=True)


AVAILABILITY = {name: availability(name) for name in PROVIDERS}
BUILT = tuple(name for name, found in AVAILABILITY.items() if found.built)


def registry_params() -> list[Any]:
    """Every registered provider, with an id that says whether it is built."""
    return [
        pytest.param(found, id=f"{name}-built" if found.built else f"{name}-not-built")
        for name, found in AVAILABILITY.items()
    ]


# -- keys and tokens ---------------------------------------------------------------------------
@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    """The identity provider's signing key, published in the JWKS under KID."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def other_rsa_key() -> rsa.RSAPrivateKey:
    """A key the identity provider never published."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    """A P-256 key the identity provider never published."""
    return ec.generate_private_key(ec.SECP256R1())


def jwks_document() -> dict[str, Any]:
    """The identity provider's JWK set: one RS256 public key."""
    jwk = RSAAlgorithm.to_jwk(rsa_key().public_key(), as_dict=True)
    jwk.update(kid=KID, alg="RS256", use="sig")
    return {"keys": [jwk]}


def jwks_client() -> httpx.AsyncClient:
    """An HTTP client on which JWKS_URL answers with jwks_document(), without a network."""

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == JWKS_URL:
            return httpx.Response(200, json=jwks_document())
        return httpx.Response(404)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def claims(
    sub: str | None = "alice", *, now: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """Valid claims for `sub`; an override of None removes the claim."""
    issued = int(time.time()) if now is None else now
    found: dict[str, Any] = {
        "sub": sub,
        "iat": issued,
        "nbf": issued,
        "exp": issued + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "name": sub.title() if isinstance(sub, str) else None,
    }
    found.update(overrides)
    return {k: v for k, v in found.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = JWT_SECRET) -> str:
    """An HS256 token."""
    return jwt.encode(payload, secret, algorithm="HS256")


def rs256(payload: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str = KID) -> str:
    """An RS256 token with a kid header."""
    return jwt.encode(payload, key or rsa_key(), algorithm="RS256", headers={"kid": kid})


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWS uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def user_token(sub: str = "alice", **overrides: Any) -> str:
    """A valid token for `sub` (HS256 with the relay's secret)."""
    return hs256(claims(sub, **overrides))


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


API_HEADERS = {"X-API-Key": API_KEY}


def forge_policy() -> Policy:
    """The built-in default policy with OPEN_RULE in front of it."""
    default = resources.files("core.policy").joinpath("default.toml").read_text(encoding="utf-8")
    return Policy.from_toml(OPEN_RULE + default, source="forgery suite policy")


# -- recorders ---------------------------------------------------------------------------------
class RecordingStore(MemoryStore):
    """The memory store, remembering the key of every write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    async def put_if_absent(self, key: str, value: bytes, *, ttl: float) -> bytes | None:
        """Store unless present; a write is recorded only when it happened."""
        existing = await super().put_if_absent(key, value, ttl=ttl)
        if existing is None:
            self.writes.append(key)
        return existing

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        """Store, replacing; recorded."""
        self.writes.append(key)
        await super().set(key, value, ttl=ttl)


@dataclass(eq=False)
class Listener:
    """A local hub subscriber that remembers every delivery."""

    socket_id: str = "999999.1"
    channels: set[str] = field(default_factory=set)
    deliveries: list[Delivery] = field(default_factory=list)

    def deliver(self, delivery: Delivery) -> None:
        """Remember the delivery."""
        self.deliveries.append(delivery)

    def events(self) -> list[tuple[str, str, str]]:
        """(channel, event, data) of every delivery."""
        return [(d.channel, d.event, d.data) for d in self.deliveries]


# -- the relay under test ----------------------------------------------------------------------
@dataclass
class Target:
    """One relay in-process on one provider, with everything that could record a forgery."""

    name: str
    settings: Settings
    relay: Relay
    app: FastAPI
    http: httpx.AsyncClient
    published: list[Message]
    store: RecordingStore
    listener: Listener | None

    @property
    def provider(self) -> Provider:
        """The provider behind the relay (its publish records)."""
        return self.relay.provider

    @property
    def local(self) -> LocalProvider | None:
        """The local provider, when that is the one under test."""
        return self.provider if isinstance(self.provider, LocalProvider) else None

    async def authorize(
        self,
        token: str | None,
        channel: str,
        *,
        socket_id: str = SOCKET_ID,
        **extra: str,
    ) -> httpx.Response:
        """POST /auth/channel as pusher-js sends it (form-encoded), with more fields if given."""
        headers = bearer(token) if token is not None else {}
        fields = {"socket_id": socket_id, "channel_name": channel, **extra}
        return await self.http.post("/auth/channel", data=fields, headers=headers)

    async def user_probe(self, token: str) -> httpx.Response:
        """What a user's token buys from this provider: a channel signature, or a client token.

        Pusher-style providers sign `private-user-alice`; token providers answer /auth/token;
        on appsync the Event API's Lambda authorizer decides (200 for isAuthorized, else 401)."""
        if self.name == "appsync":
            return await self._appsync_subscribe(token)
        answer = await self.authorize(token, "private-user-alice")
        if answer.status_code == 501:
            answer = await self.http.post("/auth/token", headers=bearer(token))
        return answer

    async def _appsync_subscribe(self, token: str) -> httpx.Response:
        """The Event API's Lambda authorizer on a subscription: allowed is 200; a refusal is the
        problem the relay's authenticator (which the authorizer asks) gives for the token."""
        from providers.appsync import authorizer

        channel = "/relay/private-user-alice"
        event = {
            "authorizationToken": token,
            "requestContext": {"operation": "EVENT_SUBSCRIBE", "channel": channel},
        }
        answer = await authorizer.authorize(
            event,
            authenticator=self.relay.authenticator,
            authorizer=self.relay.authorizer,
            namespace="relay",
            ttl_seconds=0,
        )
        if answer["isAuthorized"]:
            return httpx.Response(200, json=answer)
        try:
            await self.relay.authenticator.authenticate(authorization=f"Bearer {token}")
        except RelayError as exc:
            body = orjson.dumps(exc.problem(instance="appsync-authorizer"))
            headers = {"content-type": PROBLEM_CONTENT_TYPE, **exc.headers()}
            return httpx.Response(exc.status, content=body, headers=headers)
        return httpx.Response(403, json=answer)  # a known user the policy refused

    async def publish(
        self,
        headers: dict[str, str],
        channel: str = "open-forge",
        *,
        key: str | None = "forge-idem-1",
        **fields: Any,
    ) -> httpx.Response:
        """POST /v1/events (with an Idempotency-Key unless key is None)."""
        sent = dict(headers)
        if key is not None:
            sent["Idempotency-Key"] = key
        body = {"name": "forged", "channel": channel, "data": {"x": 1}, **fields}
        return await self.http.post("/v1/events", json=body, headers=sent)

    def members(self) -> dict[str, list[str]]:
        """Presence members the local hub holds on the watched channels."""
        local = self.local
        if local is None:
            return {}
        found = {c: [m.user_id for m in local.hub.members(c)] for c in WATCHED}
        return {c: ids for c, ids in found.items() if ids}

    def assert_untouched(self) -> None:
        """Nothing published, nothing stored, nothing delivered, nobody joined."""
        assert self.published == [], f"{self.name} published {self.published}"
        assert self.store.writes == [], f"{self.name} stored {self.store.writes}"
        if self.listener is not None:
            assert self.listener.events() == [], f"delivered {self.listener.events()}"
        assert self.members() == {}


def _record_publish(
    provider: Provider, sink: list[Message], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = provider.publish
    deliver = isinstance(provider, LocalProvider)  # the hub is in-process: let it deliver

    async def publish(messages: Sequence[Message]) -> list[Receipt]:
        sink.extend(messages)
        if deliver:
            return await original(messages)
        return [Receipt(m.channel, m.name, m.id) for m in messages]

    monkeypatch.setattr(provider, "publish", publish)


@contextlib.asynccontextmanager
async def open_target(
    name: str, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> AsyncIterator[Target]:
    """Build the relay on `name` with the suite's settings (overridden by keyword)."""
    for variable in list(os.environ):
        if variable.startswith(ENV_PREFIXES):
            monkeypatch.delenv(variable)
    for variable, value in provider_env(name, free_port()).items():
        monkeypatch.setenv(variable, value)
    settings = Settings.model_validate({**BASE_SETTINGS, "provider": name, **overrides})
    provider = provider_class(name).from_settings(settings)
    published: list[Message] = []
    _record_publish(provider, published, monkeypatch)
    store = RecordingStore()
    keys = jwks_client()
    relay = Relay.build(
        settings,
        provider=provider,
        policy=forge_policy(),
        authenticator=Authenticator(settings, http=keys),
        store=store,
    )
    try:
        app = create_app(relay=relay)
        listener = None
        if isinstance(provider, LocalProvider):
            listener = Listener()
            for channel in WATCHED:
                provider.hub.subscribe(listener, channel)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            yield Target(name, settings, relay, app, client, published, store, listener)
    finally:
        await relay.aclose()
        await keys.aclose()


@pytest.fixture(params=[pytest.param(name, id=name) for name in BUILT])
async def target(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Target]:
    """The relay on each provider the registry can build."""
    async with open_target(request.param, monkeypatch) as built:
        yield built


@pytest.fixture
async def local_target(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Target]:
    """The relay on the local provider (sockets, the Pusher HTTP API)."""
    async with open_target("local", monkeypatch) as built:
        yield built


@pytest.fixture
def make_target(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., contextlib.AbstractAsyncContextManager[Target]]:
    """`async with make_target("local", jwt_secret=None) as t:` another configuration."""

    def make(name: str, **overrides: Any) -> contextlib.AbstractAsyncContextManager[Target]:
        return open_target(name, monkeypatch, **overrides)

    return make


@contextlib.asynccontextmanager
async def serve(app: FastAPI, *, guarded: bool = False) -> AsyncIterator[int]:
    """Serve `app` (its lifespan left to the target) on a free 127.0.0.1 port; yield the port.
    `guarded`: on `relay serve`'s HTTP protocol, whose SSE streams run on lent connections."""
    async with servers.serve(app, lifespan="off", guarded=guarded) as server:
        yield server.port


@pytest.fixture(params=[True, False], ids=["lean", "asgi"])
def lean_sse(request: pytest.FixtureRequest) -> bool:
    """Both SSE drivers: the connection lent by `relay serve`'s protocol, a streaming response."""
    return bool(request.param)
