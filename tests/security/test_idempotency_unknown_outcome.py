"""Issue 12, finding 3: a publish whose outcome is unknown keeps its Idempotency-Key.

Pusher has no idempotent publishing: a real local HTTP server stands in for it, takes every
publish and answers only after the relay's timeout. The relay answers 504 `accepted: null`; each
retry with the same key must publish nothing and get that 504 again (`Idempotent-Replayed`), so
the server holds one copy however often the caller retries. A failure where the server surely
did not take the message (500 on every attempt) still releases the key.

Ably drops a repeated message id for two minutes: within that window a retry resends under the
very same ids (the fake of Ably's REST API from the contract tests discards the repeat); past
it, the retry sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import SecretStr

from app.main import create_app
from app.relay import Relay
from core.settings import Settings
from core.stores.memory import MemoryStore
from core.stores.redis import RedisStore
from providers.ably.provider import AblyProvider, resend_window
from providers.ably.rest import AblyRest as RelayAblyRest
from providers.ably.settings import AblySettings
from providers.pusher.provider import PusherProvider
from providers.pusher.settings import PusherSettings
from tests.contract.test_ably_rest_contract import KEY as ABLY_KEY
from tests.contract.test_ably_rest_contract import FakeAbly, Fault
from tests.integration.conftest import REDIS_URL, redis_unreachable
from tests.security.conftest import serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from core.stores.base import Store

API_KEY = "unknown-outcome-api-key-0123456789"
JWT_SECRET = "unknown-outcome-jwt-secret-0123456789abcdef"
PUSHER_SECRET = "late-secret-0123456789abcdef"
SETTINGS: dict[str, Any] = {
    "env": "test",
    "jwt_secret": JWT_SECRET,
    "api_keys": API_KEY,
    "rate_limits": False,
}
PUSHER_TIMEOUT = 0.3  # PUSHER_TIMEOUT_SECONDS
LATE = PUSHER_TIMEOUT * 3  # the server's answer comes this long after the request
RETRIES = 3
EVENT = {"name": "order", "channel": "orders", "data": {"id": 7}}
HEADERS = {"X-API-Key": API_KEY}
PROBLEM = "urn:realtime-relay:problem:"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The memory store, and the Redis server running here (its keys deleted afterwards)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    problem = redis_unreachable(REDIS_URL)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    prefix = f"relay-test-{uuid.uuid4().hex[:12]}:"
    backend = RedisStore(REDIS_URL, prefix=prefix)
    try:
        yield backend
    finally:
        keys = [key async for key in backend._redis.scan_iter(match=prefix + "*")]
        if keys:
            await backend._redis.delete(*keys)
        await backend.aclose()


# -- Pusher: a real server that answers late --------------------------------------------------
@dataclass
class LatePusher:
    """Pusher's HTTP API, reduced to what counts here: the events it took (answered 2xx)."""

    delay: float = 0.0
    fail: bool = False  # answer 500 without taking anything
    requests: int = 0
    taken: list[dict[str, Any]] = field(default_factory=list)
    running: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def app(self) -> FastAPI:
        """The ASGI app serving `/apps/{id}/batch_events` and `/apps/{id}/events`."""
        app = FastAPI()

        @app.post("/apps/{app_id}/{call}")
        async def publish(app_id: str, call: str, request: Request) -> Response:
            self.requests += 1
            if self.fail:
                return Response("internal error", status_code=500)
            body = orjson.loads(await request.body())
            self.running += 1
            self.idle.clear()
            try:
                await asyncio.sleep(self.delay)  # the relay gives up meanwhile; the event stays
                self.taken.extend(body["batch"] if call == "batch_events" else [body])
            finally:
                self.running -= 1
                if not self.running:
                    self.idle.set()
            return Response(b"{}", media_type="application/json")

        return app

    def copies(self, n: int) -> int:
        """How many times event `n` was taken."""
        return sum(1 for e in self.taken if orjson.loads(e["data"]) == {"id": n})


@contextlib.asynccontextmanager
async def pusher_relay(server: LatePusher, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The relay on the pusher provider, pointed at `server`, with a client for it."""
    async with serve(server.app()) as port:
        pusher = PusherSettings(
            app_id="880088",
            key="late-key",
            secret=SecretStr(PUSHER_SECRET),
            host="127.0.0.1",
            port=port,
            use_tls=False,
            timeout_seconds=PUSHER_TIMEOUT,
        )
        relay = Relay.build(Settings(**SETTINGS), provider=PusherProvider(pusher), store=store)
        transport = httpx.ASGITransport(app=create_app(relay=relay))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
                yield http
                # The late answers finish before the server stops.
                await asyncio.wait_for(server.idle.wait(), 10)
        finally:
            await relay.aclose()


async def publish(http: httpx.AsyncClient, key: str, n: int) -> httpx.Response:
    """POST /v1/events for event `n` with the Idempotency-Key."""
    body = {**EVENT, "data": {"id": n}}
    return await http.post("/v1/events", json=body, headers={**HEADERS, "Idempotency-Key": key})


async def test_control_a_prompt_answer_is_published_once(store: Store) -> None:
    server = LatePusher()
    async with pusher_relay(server, store) as http:
        first = await publish(http, "prompt-1", 1)
        assert first.status_code == 200, first.text
        again = await publish(http, "prompt-1", 1)
        assert again.headers["idempotent-replayed"] == "true"
    assert server.copies(1) == 1


async def test_retries_after_a_late_answer_publish_nothing(store: Store) -> None:
    server = LatePusher(delay=LATE)
    async with pusher_relay(server, store) as http:
        first = await publish(http, "late-1", 1)
        assert first.status_code == 504, first.text
        problem = first.json()
        assert problem["type"] == PROBLEM + "provider-timeout"
        assert problem["accepted"] is None
        for _ in range(RETRIES):
            retry = await publish(http, "late-1", 1)
            assert retry.status_code == 504, retry.text
            assert retry.headers["content-type"] == "application/problem+json"
            assert retry.headers["idempotent-replayed"] == "true"
            assert retry.json() == problem
    assert server.requests == 1
    assert server.copies(1) == 1  # the first attempt's, taken late: never a second one


async def test_a_failure_the_provider_did_not_take_still_releases_the_key(store: Store) -> None:
    server = LatePusher(fail=True)
    async with pusher_relay(server, store) as http:
        refused = await publish(http, "refused-1", 2)
        assert refused.status_code == 502, refused.text
        assert refused.json()["accepted"] is False
        server.fail = False
        retry = await publish(http, "refused-1", 2)
        assert retry.status_code == 200, retry.text
        assert "idempotent-replayed" not in retry.headers
    assert server.copies(2) == 1


# -- Ably: a retry resends under the same ids -------------------------------------------------
@dataclass
class AblySetup:
    """The relay on the Ably provider, Ably's REST API faked in memory, and a client."""

    fake: FakeAbly
    relay: Relay
    http: httpx.AsyncClient

    def ids(self) -> list[list[str]]:
        """The message ids of every request the fake received."""
        found = []
        for body in self.fake.bodies():
            messages = [body] if isinstance(body, dict) else [spec["messages"] for spec in body]
            found.append([m["id"] for m in messages])
        return found


@contextlib.asynccontextmanager
async def ably_relay(store: Store) -> AsyncIterator[AblySetup]:
    """The relay on AblyProvider, whose REST client talks to a FakeAbly (no waits slept)."""
    fake = FakeAbly()
    settings = AblySettings(api_key=SecretStr(ABLY_KEY))

    async def no_sleep(seconds: float) -> None:
        return None

    client = httpx.AsyncClient(transport=httpx.MockTransport(fake), base_url=settings.base_url)
    rest = RelayAblyRest(settings, http=client, sleep=no_sleep)
    relay = Relay.build(
        Settings(**SETTINGS), provider=AblyProvider(settings, rest=rest), store=store
    )
    transport = httpx.ASGITransport(app=create_app(relay=relay))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
            yield AblySetup(fake, relay, http)
    finally:
        await relay.aclose()
        await client.aclose()


def unanswered(attempts: int) -> list[Fault]:
    """Ably takes the request, and the answer is lost (a read timeout), `attempts` times."""
    return [Fault(raises=httpx.ReadTimeout, after_processing=True) for _ in range(attempts)]


async def test_ably_a_retry_resends_under_the_same_ids(store: Store) -> None:
    async with ably_relay(store) as s:
        s.fake.script.extend(unanswered(3))
        first = await publish(s.http, "ably-late-1", 3)
        assert first.status_code == 504, first.text
        assert first.json()["accepted"] is None
        retry = await publish(s.http, "ably-late-1", 3)
        assert retry.status_code == 200, retry.text
        assert "idempotent-replayed" not in retry.headers
        (receipt,) = retry.json()["receipts"]
        # Four requests (three attempts, one resend), each with the same id: one message.
        assert s.ids() == [[receipt["id"]]] * 4
        assert [m["id"] for m in s.fake.history["orders"]] == [receipt["id"]]
        replayed = await publish(s.http, "ably-late-1", 3)
        assert replayed.headers["idempotent-replayed"] == "true"
        assert len(s.fake.requests) == 4


async def test_ably_past_its_window_a_retry_sends_nothing(store: Store) -> None:
    async with ably_relay(store) as s:
        now = [1_000_000.0]
        s.relay.publisher.idempotency.clock = lambda: now[0]
        window = s.relay.provider.limits.idempotent_ids_seconds
        assert 0 < window < 120
        s.fake.script.extend(unanswered(3))
        first = await publish(s.http, "ably-late-2", 4)
        assert first.status_code == 504, first.text
        now[0] += window
        late = await publish(s.http, "ably-late-2", 4)
        assert late.status_code == 504, late.text
        assert late.headers["idempotent-replayed"] == "true"
        assert late.json() == first.json()
        assert len(s.fake.requests) == 3  # the first request's three attempts, nothing since


def test_ably_resend_window_leaves_room_for_the_resend_itself() -> None:
    # Ably's two minutes, less one whole call: every attempt timing out, every wait longest
    # (the REST client's backoff caps at 2 s; a 429's Retry-After is honoured up to 10 s).
    no_waits = AblySettings(api_key=SecretStr(ABLY_KEY), max_retry_wait_seconds=0)
    assert resend_window(no_waits) == 120 - (3 * 5.0 + 2 * 2.0)
    default = AblySettings(api_key=SecretStr(ABLY_KEY))
    assert resend_window(default) == 120 - (3 * 5.0 + 2 * 10.0)  # 85 s, docs/security.md
    slow = AblySettings(api_key=SecretStr(ABLY_KEY), timeout_seconds=30, max_attempts=5)
    assert resend_window(slow) == 0.0  # no resend can land in time: retries send nothing
