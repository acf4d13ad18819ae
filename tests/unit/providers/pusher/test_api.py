"""PusherApi, Coalescer and PusherProvider.publish against a fake Pusher (httpx.MockTransport).

Every request the fake receives must pass the relay's own HTTP API signature check, as Pusher's
would; the fake records what it received so that grouping, retries and coalescing can be counted.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import nacl.secret
import orjson
import pytest

from core.errors import (
    ConfigurationError,
    PayloadTooLarge,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from core.provider import Message
from core.settings import Settings, read_env
from providers.outbound.policy import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS
from providers.pusher.api import PusherApi
from providers.pusher.coalescer import Coalescer
from providers.pusher.provider import PusherProvider
from providers.pusher.settings import PusherSettings
from providers.pusherproto import encryption as crypto
from providers.pusherproto import signing

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

APP_ID = "4242"
KEY = "api-test-key"
SECRET = "api-test-secret-0123456789abcdef"
MASTER_KEY = bytes(range(1, 33))
MASTER_KEY_BASE64 = base64.b64encode(MASTER_KEY).decode()
PREFIX = f"/apps/{APP_ID}"


@pytest.fixture(autouse=True)
def _no_pusher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PUSHER_"):
            monkeypatch.delenv(name)


def make_settings(**overrides: Any) -> PusherSettings:
    values: dict[str, Any] = {
        "app_id": APP_ID,
        "key": KEY,
        "secret": SECRET,
        "host": "pusher.test",
        "port": 8080,
        "use_tls": False,
        "encryption_master_key_base64": MASTER_KEY_BASE64,
    }
    values.update(overrides)
    return PusherSettings(**values)


@dataclass
class Call:
    """One request the fake Pusher received, already signature-checked."""

    method: str
    path: str
    params: dict[str, str]
    body: Any


@dataclass
class FakePusher:
    """Checks signatures like Pusher, records calls, answers through a replaceable reply."""

    reply: Callable[[Call], Awaitable[httpx.Response] | httpx.Response] | None = None
    calls: list[Call] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        raw = request.content
        # Raises InvalidSignature, which fails the test, if the relay signed it wrongly.
        pairs = signing.query_pairs(request.url.query)
        signing.verify_request(KEY, SECRET, request.method, request.url.path, pairs, raw)
        call = Call(request.method, request.url.path, params, orjson.loads(raw) if raw else None)
        self.calls.append(call)
        if self.reply is None:
            return httpx.Response(200, json={})
        answer = self.reply(call)
        if not isinstance(answer, httpx.Response):
            answer = await answer
        return answer

    def paths(self) -> list[str]:
        return [c.path.removeprefix(PREFIX) for c in self.calls]

    def batches(self) -> list[list[dict[str, str]]]:
        return [c.body["batch"] for c in self.calls if c.path == f"{PREFIX}/batch_events"]

    def event_calls(self) -> list[dict[str, Any]]:
        return [c.body for c in self.calls if c.path == f"{PREFIX}/events"]


@dataclass
class Sleeps:
    """A recording stand-in for asyncio.sleep."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def fake() -> FakePusher:
    return FakePusher()


@pytest.fixture
async def http(fake: FakePusher) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings()
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(fake), base_url=settings.base_url
    ) as client:
        yield client


def make_api(http: httpx.AsyncClient, sleeps: Sleeps, **overrides: Any) -> PusherApi:
    return PusherApi(make_settings(**overrides), http=http, sleep=sleeps, jitter=lambda: 1.0)


@pytest.fixture
async def make_provider(
    http: httpx.AsyncClient,
) -> AsyncIterator[Callable[..., PusherProvider]]:
    made: list[PusherProvider] = []

    def build(**overrides: Any) -> PusherProvider:
        made.append(PusherProvider(make_settings(**overrides), http=http))
        return made[-1]

    yield build
    for p in made:
        await p.aclose()


def msgs(*specs: tuple[str, str], name: str = "ev", socket_id: str | None = None) -> list[Message]:
    return [
        Message(channel, name, data, socket_id, f"id-{i}")
        for i, (channel, data) in enumerate(specs)
    ]


@pytest.mark.parametrize("used_before", [False, True])
async def test_a_closed_provider_refuses_calls_and_sends_nothing(
    fake: FakePusher, make_provider: Callable[..., PusherProvider], used_before: bool
) -> None:
    relay = make_provider()
    if used_before:
        await relay.publish(msgs(("a", "1")))
    await relay.aclose()
    with pytest.raises(ProviderUnavailable):
        await relay.publish(msgs(("a", "2")))
    assert len(fake.calls) == int(used_before)


# -- signing ---------------------------------------------------------------------------------
async def test_every_call_is_signed_as_pusher_checks(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    fake.reply = lambda call: httpx.Response(
        200, json={"users": [{"id": "ann"}, {"id": 7}]} if call.path.endswith("/users") else {}
    )
    relay = make_provider()
    await relay.publish(msgs(("a", "1")))
    await relay.publish(msgs(("a", "1"), ("b", "1")))
    await relay.occupancy("presence-room")
    members = await relay.members("presence-room")
    await relay.send_to_user("ann", "note", '{"x":1}')
    await relay.terminate_user("ann")
    assert [m.user_id for m in members] == ["ann", "7"]
    assert fake.paths() == [
        "/batch_events",
        "/events",
        "/channels/presence-room",
        "/channels/presence-room/users",
        "/events",
        "/users/ann/terminate_connections",
    ]
    for call in fake.calls:
        assert call.params["auth_key"] == KEY
        assert call.params["auth_version"] == "1.0"
        assert abs(int(call.params["auth_timestamp"]) - time.time()) < 60
        assert ("body_md5" in call.params) == (call.method == "POST")
    assert fake.calls[2].params["info"] == "subscription_count,user_count"
    assert fake.calls[4].body == {
        "name": "note",
        "data": '{"x":1}',
        "channels": ["#server-to-user-ann"],
    }


async def test_a_forged_signature_would_be_noticed(
    http: httpx.AsyncClient, fake: FakePusher
) -> None:
    # The fake really checks: a client with another secret is refused by it.
    forger = PusherApi(make_settings(secret="not-the-secret"), http=http, sleep=Sleeps())
    with pytest.raises(Exception, match="auth_signature does not match"):
        await forger.post("/events", {"name": "x", "data": "1", "channels": ["a"]})
    assert fake.calls == []


# -- retries ---------------------------------------------------------------------------------
def failing(statuses: list[int | type[Exception]]) -> Callable[[Call], httpx.Response]:
    """Answer with each status (or raise each exception) in turn, then 200."""
    queue = list(statuses)

    def reply(call: Call) -> httpx.Response:
        if not queue:
            return httpx.Response(200, json={"ok": True})
        outcome = queue.pop(0)
        if isinstance(outcome, int):
            return httpx.Response(outcome, text=f"fake says {outcome}")
        raise outcome("fake transport trouble")

    return reply


async def test_5xx_then_200_is_retried_with_growing_backoff(
    http: httpx.AsyncClient, fake: FakePusher
) -> None:
    fake.reply = failing([500, 502, 503, 504])
    sleeps = Sleeps()
    api = make_api(http, sleeps, max_attempts=5)
    assert await api.post("/events", {"name": "x", "data": "1", "channels": ["a"]}) == {"ok": True}
    assert len(fake.calls) == 5
    assert sleeps.delays == [
        BACKOFF_BASE_SECONDS,
        BACKOFF_BASE_SECONDS * 2,
        BACKOFF_BASE_SECONDS * 4,
        BACKOFF_BASE_SECONDS * 8,
    ]
    # Each retry is signed afresh and carries the same body.
    assert all(c.body == fake.calls[0].body for c in fake.calls)


async def test_backoff_is_capped(http: httpx.AsyncClient, fake: FakePusher) -> None:
    fake.reply = failing([500] * 9)
    sleeps = Sleeps()
    api = make_api(http, sleeps, max_attempts=10)
    await api.get("/channels/a")
    assert len(sleeps.delays) == 9
    assert all(d <= BACKOFF_CAP_SECONDS for d in sleeps.delays)
    assert sleeps.delays == sorted(sleeps.delays)
    assert sleeps.delays[-1] == BACKOFF_CAP_SECONDS
    growing = [d for d in sleeps.delays if d < BACKOFF_CAP_SECONDS]
    assert all(b == 2 * a for a, b in itertools.pairwise(growing))


async def test_jitter_scales_the_delay(http: httpx.AsyncClient, fake: FakePusher) -> None:
    fake.reply = failing([500, 500])
    sleeps = Sleeps()
    api = PusherApi(make_settings(), http=http, sleep=sleeps, jitter=lambda: 0.25)
    await api.get("/channels/a")
    assert sleeps.delays == [BACKOFF_BASE_SECONDS * 0.25, BACKOFF_BASE_SECONDS * 0.5]


async def test_connect_timeouts_are_retried(http: httpx.AsyncClient, fake: FakePusher) -> None:
    fake.reply = failing([httpx.ConnectTimeout, httpx.PoolTimeout])
    sleeps = Sleeps()
    api = make_api(http, sleeps, max_attempts=3)
    assert await api.post("/events", {"name": "x", "data": "1", "channels": ["a"]}) == {"ok": True}
    assert len(fake.calls) == 3
    assert len(sleeps.delays) == 2


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError])
async def test_a_request_sent_but_unanswered_is_not_retried(
    http: httpx.AsyncClient, fake: FakePusher, error: type[Exception]
) -> None:
    # Pusher has no idempotency: retrying what it may already have would deliver it twice.
    fake.reply = failing([error, error, error])
    sleeps = Sleeps()
    api = make_api(http, sleeps, max_attempts=3)
    with pytest.raises(ProviderTimeout) as failed:
        await api.post("/events", {"name": "x", "data": "1", "channels": ["a"]})
    assert failed.value.status == 504
    assert failed.value.problem()["accepted"] is None
    assert len(fake.calls) == 1
    assert sleeps.delays == []


async def test_connect_timeouts_exhausted_are_unavailable(
    http: httpx.AsyncClient, fake: FakePusher
) -> None:
    fake.reply = failing([httpx.ConnectTimeout] * 3)
    api = make_api(http, Sleeps(), max_attempts=3)
    with pytest.raises(ProviderUnavailable) as failed:
        await api.post("/events", {"name": "x", "data": "1", "channels": ["a"]})
    assert failed.value.status == 503
    assert "unreachable" in failed.value.detail
    assert failed.value.problem()["accepted"] is False
    assert len(fake.calls) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 429])
async def test_4xx_is_not_retried_and_carries_the_reason(
    http: httpx.AsyncClient, fake: FakePusher, status: int
) -> None:
    fake.reply = lambda call: httpx.Response(status, text="Invalid channel name: bad channel ")
    sleeps = Sleeps()
    api = make_api(http, sleeps, max_attempts=5)
    with pytest.raises(ProviderError) as failed:
        await api.post("/events", {"name": "x", "data": "1", "channels": ["a"]})
    error = failed.value
    assert type(error) is ProviderError
    assert error.status == 502
    assert error.retryable is False
    assert "Invalid channel name: bad channel" in error.detail
    assert str(status) in error.detail
    assert error.problem()["provider_status"] == status
    assert SECRET not in str(error.problem())
    assert len(fake.calls) == 1
    assert sleeps.delays == []


async def test_a_long_reason_is_cut(http: httpx.AsyncClient, fake: FakePusher) -> None:
    fake.reply = lambda call: httpx.Response(400, text="x" * 10_000)
    api = make_api(http, Sleeps())
    with pytest.raises(ProviderError) as failed:
        await api.get("/channels/a")
    assert len(failed.value.detail) < 400


async def test_5xx_exhausted_is_a_retryable_provider_error(
    http: httpx.AsyncClient, fake: FakePusher
) -> None:
    fake.reply = failing([503] * 3)
    api = make_api(http, Sleeps(), max_attempts=3)
    with pytest.raises(ProviderError) as failed:
        await api.post("/events", {"name": "x", "data": "1", "channels": ["a"]})
    assert failed.value.status in (502, 503)
    assert failed.value.retryable is True
    assert "fake says 503" in failed.value.detail


async def test_transport_errors_exhausted_are_unavailable(
    http: httpx.AsyncClient, fake: FakePusher
) -> None:
    fake.reply = failing([httpx.ConnectError] * 4)
    sleeps = Sleeps()
    api = make_api(http, sleeps, max_attempts=4)
    with pytest.raises(ProviderUnavailable) as failed:
        await api.post("/events", {"name": "x", "data": "1", "channels": ["a"]})
    assert failed.value.status == 503
    assert failed.value.headers() == {"Retry-After": "1"}
    assert "ConnectError" in failed.value.detail
    assert len(fake.calls) == 4
    assert len(sleeps.delays) == 3


@pytest.mark.parametrize("attempts", [1, 2, 5])
async def test_max_attempts_is_respected(
    http: httpx.AsyncClient, fake: FakePusher, attempts: int
) -> None:
    fake.reply = failing([500] * 10)
    sleeps = Sleeps()
    api = make_api(http, sleeps, max_attempts=attempts)
    with pytest.raises(ProviderError):
        await api.get("/channels/a")
    assert len(fake.calls) == attempts
    assert len(sleeps.delays) == attempts - 1


# -- publish grouping ------------------------------------------------------------------------
async def test_one_event_to_250_channels_is_three_events_calls(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    relay = make_provider()
    channels = [f"ch-{i}" for i in range(250)]
    receipts = await relay.publish(msgs(*[(c, '{"n":1}') for c in channels], name="fan"))
    calls = fake.event_calls()
    assert [len(c["channels"]) for c in calls] == [100, 100, 50]
    assert [ch for c in calls for ch in c["channels"]] == channels
    assert all(c["name"] == "fan" and c["data"] == '{"n":1}' for c in calls)
    assert fake.batches() == []
    assert [r.channel for r in receipts] == channels
    assert [r.id for r in receipts] == [f"id-{i}" for i in range(250)]


async def test_25_single_channel_events_ride_batches_of_at_most_10(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    relay = make_provider()
    receipts = await relay.publish(msgs(*[(f"ch-{i}", f"{i}") for i in range(25)]))
    batches = fake.batches()
    assert all(len(b) <= 10 for b in batches)
    assert sorted(len(b) for b in batches) == [5, 10, 10]
    sent = sorted(int(e["data"]) for b in batches for e in b)
    assert sent == list(range(25))
    assert fake.event_calls() == []
    assert len(receipts) == 25


async def test_encrypted_channels_are_encrypted_per_channel_and_sent_alone(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    relay = make_provider()
    secret_channels = ["private-encrypted-a", "private-encrypted-b"]
    plain = ["private-p1", "private-p2", "public"]
    data = '{"card":"4111"}'
    await relay.publish(msgs(*[(c, data) for c in [*secret_channels, *plain]], socket_id="1.2"))
    # The plain channels share one events call; no encrypted channel is ever in one.
    for call in fake.event_calls():
        assert not any(c.startswith("private-encrypted-") for c in call["channels"])
        assert call["data"] == data
    assert [c["channels"] for c in fake.event_calls()] == [plain]
    sealed = [e for b in fake.batches() for e in b]
    assert sorted(e["channel"] for e in sealed) == secret_channels
    for event in sealed:
        assert data not in event["data"]
        assert event["socket_id"] == "1.2"
        envelope = orjson.loads(event["data"])
        box = nacl.secret.SecretBox(crypto.shared_secret(event["channel"], MASTER_KEY))
        opened = box.decrypt(
            base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"])
        )
        assert opened.decode() == data
        wrong = next(c for c in secret_channels if c != event["channel"])
        with pytest.raises(nacl.exceptions.CryptoError):
            nacl.secret.SecretBox(crypto.shared_secret(wrong, MASTER_KEY)).decrypt(
                base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"])
            )


async def test_encrypted_data_over_the_limit_is_refused_before_any_call(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    relay = make_provider(max_payload_bytes=1024)
    with pytest.raises(PayloadTooLarge) as refused:
        await relay.publish(msgs(("private-encrypted-a", "x" * 900), ("public", "x" * 900)))
    assert refused.value.status == 413
    assert fake.calls == []


async def test_socket_id_is_carried(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    relay = make_provider()
    await relay.publish(msgs(("a", "1"), ("b", "1"), socket_id="123.456"))
    await relay.publish(msgs(("c", "2"), socket_id="123.456"))
    await relay.publish(msgs(("d", "3")))
    assert fake.event_calls() == [
        {"name": "ev", "data": "1", "channels": ["a", "b"], "socket_id": "123.456"}
    ]
    assert fake.batches() == [
        [{"channel": "c", "name": "ev", "data": "2", "socket_id": "123.456"}],
        [{"channel": "d", "name": "ev", "data": "3"}],
    ]


async def test_same_event_with_different_data_is_not_merged(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    relay = make_provider()
    await relay.publish(msgs(("a", "1"), ("b", "2"), ("c", "1")))
    # Only consecutive messages of one event are merged: order is what the caller sent.
    assert fake.event_calls() == []
    assert fake.batches() == [
        [
            {"channel": "a", "name": "ev", "data": "1"},
            {"channel": "b", "name": "ev", "data": "2"},
            {"channel": "c", "name": "ev", "data": "1"},
        ]
    ]


async def test_events_on_one_channel_keep_their_order(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    relay = make_provider(max_in_flight=1)
    await relay.publish(msgs(("c", "1"), ("c", "2"), ("c", "1")))
    for call in fake.event_calls():
        assert len(call["channels"]) == len(set(call["channels"]))
    sent = [e["data"] for b in fake.batches() for e in b]
    assert sent == ["1", "2", "1"]


# -- coalescing ------------------------------------------------------------------------------
@dataclass
class Gate:
    """Holds the first call at the fake until released; records what was answered, in order."""

    released: asyncio.Event = field(default_factory=asyncio.Event)
    first_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    answered: list[str] = field(default_factory=list)
    fail_when: Callable[[Call], bool] = lambda call: False

    async def __call__(self, call: Call) -> httpx.Response:
        if not self.first_arrived.is_set():
            self.first_arrived.set()
            await self.released.wait()
        if self.fail_when(call):
            return httpx.Response(400, text="fake refuses this batch")
        self.answered.extend(e["data"] for e in call.body["batch"])
        return httpx.Response(200, json={})


async def _publish_concurrently(
    relay: PusherProvider, gate: Gate, count: int
) -> dict[str, BaseException | None]:
    outcome: dict[str, BaseException | None] = {}

    async def publisher(i: int) -> None:
        data = f"e{i}"
        try:
            await relay.publish(msgs((f"ch-{i}", data)))
        except ProviderError as exc:
            outcome[data] = exc
            return
        # Returned only once the call that carried this event was answered.
        assert data in gate.answered
        outcome[data] = None

    first = asyncio.create_task(publisher(0))
    await asyncio.wait_for(gate.first_arrived.wait(), 5)
    rest = [asyncio.create_task(publisher(i)) for i in range(1, count)]
    await asyncio.sleep(0)
    assert not any(t.done() for t in [first, *rest])
    gate.released.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    return outcome


async def test_concurrent_publishes_are_coalesced(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    gate = Gate()
    fake.reply = gate
    relay = make_provider(max_in_flight=1)
    outcome = await _publish_concurrently(relay, gate, 30)
    assert outcome == {f"e{i}": None for i in range(30)}
    batches = fake.batches()
    assert len(batches) <= 5
    assert all(len(b) <= 10 for b in batches)
    assert sorted(e["data"] for b in batches for e in b) == sorted(f"e{i}" for i in range(30))
    assert relay.batches.calls == len(batches)


async def test_a_lone_publish_is_sent_at_once(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    relay = make_provider(max_in_flight=1)
    started = time.monotonic()
    await relay.publish(msgs(("a", "only")))
    assert time.monotonic() - started < 0.1
    assert fake.batches() == [[{"channel": "a", "name": "ev", "data": "only"}]]
    await relay.publish(msgs(("b", "next")))
    assert len(fake.calls) == 2


async def test_a_failed_batch_fails_exactly_its_publishers(
    fake: FakePusher, make_provider: Callable[..., PusherProvider]
) -> None:
    gate = Gate(fail_when=lambda call: any(e["data"] == "e7" for e in call.body["batch"]))
    fake.reply = gate
    relay = make_provider(max_in_flight=1)
    outcome = await _publish_concurrently(relay, gate, 30)
    failed_batch = next(b for b in fake.batches() if any(e["data"] == "e7" for e in b))
    in_failed = {e["data"] for e in failed_batch}
    assert len(in_failed) > 1  # a shared call, so the test means something
    assert {d for d, exc in outcome.items() if exc is not None} == in_failed
    for data in in_failed:
        error = outcome[data]
        assert isinstance(error, ProviderError)
        assert "fake refuses this batch" in error.detail
    assert set(gate.answered) == {f"e{i}" for i in range(30)} - in_failed


async def _ticks(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_coalescer_keeps_at_most_max_in_flight_calls() -> None:
    in_flight = 0
    peak = 0
    release = asyncio.Event()
    sent: list[list[int]] = []

    async def send(items: list[int]) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        sent.append(items)
        in_flight -= 1

    coalescer: Coalescer[int] = Coalescer(send, batch_size=3, max_in_flight=2)
    waiters = [asyncio.create_task(coalescer.submit([i])) for i in range(7)]
    await _ticks()
    assert coalescer.calls == 2  # two calls in flight; the rest wait for a free slot
    release.set()
    await asyncio.gather(*waiters)
    assert peak == 2
    assert sorted(i for batch in sent for i in batch) == list(range(7))
    assert all(len(batch) <= 3 for batch in sent)


async def test_coalescer_aclose_waits_for_queued_items_too() -> None:
    release = asyncio.Event()
    sent: list[int] = []

    async def send(items: list[int]) -> None:
        await release.wait()
        await asyncio.sleep(0.01)  # a call takes time
        sent.extend(items)

    coalescer: Coalescer[int] = Coalescer(send, batch_size=3, max_in_flight=2)
    waiters = [asyncio.create_task(coalescer.submit([i])) for i in range(7)]
    await _ticks()
    closing = asyncio.create_task(coalescer.aclose())
    await _ticks()
    release.set()
    await asyncio.wait_for(closing, 5)
    sent_when_closed = sorted(sent)
    await asyncio.gather(*waiters)  # no task left pending, whatever the outcome
    assert sorted(sent) == list(range(7))
    # Once aclose returns, a provider closes its HTTP pool: nothing may still be unsent.
    assert sent_when_closed == list(range(7))


# -- settings --------------------------------------------------------------------------------
def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    base = {"PUSHER_APP_ID": APP_ID, "PUSHER_KEY": KEY, "PUSHER_SECRET": SECRET}
    base.update(values)
    for name, value in base.items():
        if value == "<unset>":
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("env", "variable", "secret_value"),
    [
        ({"PUSHER_APP_ID": "<unset>"}, "PUSHER_APP_ID", None),
        ({"PUSHER_APP_ID": "app-one"}, "PUSHER_APP_ID", None),
        ({"PUSHER_SECRET": "<unset>"}, "PUSHER_SECRET", None),
        (
            {"PUSHER_ENCRYPTION_MASTER_KEY_BASE64": "not base64 at all!!"},
            "PUSHER_ENCRYPTION_MASTER_KEY_BASE64",
            "not base64 at all!!",
        ),
        (
            {"PUSHER_ENCRYPTION_MASTER_KEY_BASE64": base64.b64encode(b"k" * 16).decode()},
            "PUSHER_ENCRYPTION_MASTER_KEY_BASE64",
            base64.b64encode(b"k" * 16).decode(),
        ),
        (
            {"PUSHER_ENCRYPTION_MASTER_KEY_BASE64": base64.b64encode(b"k" * 33).decode()},
            "PUSHER_ENCRYPTION_MASTER_KEY_BASE64",
            base64.b64encode(b"k" * 33).decode(),
        ),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str, secret_value: str | None
) -> None:
    _env(monkeypatch, **env)
    with pytest.raises(ConfigurationError) as refused:
        read_env(PusherSettings)
    assert refused.value.detail.startswith(f"{variable}: ")
    assert "\n" not in refused.value.detail
    if secret_value is not None:
        assert secret_value not in refused.value.detail
    # The provider reads its settings the same way.
    with pytest.raises(ConfigurationError, match=f"^{variable}: "):
        PusherProvider.from_settings(Settings(env="test"))


async def test_good_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(
        monkeypatch,
        PUSHER_ENCRYPTION_MASTER_KEY_BASE64=MASTER_KEY_BASE64,
        PUSHER_HOST="127.0.0.1",
        PUSHER_PORT="6001",
        PUSHER_USE_TLS="false",
    )
    settings = read_env(PusherSettings)
    assert settings.master_key == MASTER_KEY
    assert settings.base_url == "http://127.0.0.1:6001"
    relay = PusherProvider.from_settings(Settings(env="test"))
    try:
        assert relay.settings == settings
        assert relay.limits.supports_encrypted_channels
    finally:
        await relay.aclose()
    monkeypatch.delenv("PUSHER_HOST")
    monkeypatch.delenv("PUSHER_PORT")
    monkeypatch.delenv("PUSHER_USE_TLS")
    monkeypatch.setenv("PUSHER_CLUSTER", "eu")
    assert read_env(PusherSettings).base_url == "https://api-eu.pusher.com:443"
