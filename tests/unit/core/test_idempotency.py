"""Idempotency-Key on POST /v1/events and /v1/batch: a repeat gets the first answer, publishes
nothing; concurrent repeats publish once; a changed body is refused; a failure frees the key."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import orjson
import pytest

from app.main import create_app
from app.relay import Relay
from core.errors import (
    IdempotencyInProgress,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    TimeoutReplayed,
)
from core.idempotency import PENDING_SECONDS, Idempotency
from core.settings import Settings
from core.stores.memory import MemoryStore
from providers.local.provider import LocalProvider
from tests.unit.conftest import UNIT_SETTINGS, Recorder, eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from core.provider import Message, Receipt

PROBLEM = "urn:realtime-relay:problem:"
API_KEY = str(UNIT_SETTINGS["api_keys"])
OTHER_API_KEY = "idempotency-second-api-key-0123"
EVENT = {"name": "order", "channel": "orders", "data": {"id": 7}}


class ControlledProvider(LocalProvider):
    """The local provider, with a publish that can be held at a gate or made to fail."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.calls = 0
        self.sent: list[list[str | None]] = []  # the message ids of every call
        self.gate: asyncio.Event | None = None
        self.failures: list[Exception] = []

    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        self.calls += 1
        self.sent.append([m.id for m in messages])
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        return await super().publish(messages)


class Clock:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    http: httpx.AsyncClient
    provider: ControlledProvider
    recorder: Recorder
    relay: Relay

    async def publish(
        self,
        key: str | bytes | None,
        body: dict[str, Any] | None = None,
        *,
        api_key: str = API_KEY,
    ) -> httpx.Response:
        headers = [(b"x-api-key", api_key.encode())]
        if key is not None:
            headers.append((b"idempotency-key", key.encode() if isinstance(key, str) else key))
        return await self.http.post("/v1/events", json=body or EVENT, headers=headers)


@pytest.fixture
def build(
    relay_settings: Settings,
) -> Any:
    """`async with build(**settings) as s:` an app on a ControlledProvider, a recorder on
    `orders`, and a client."""

    @contextlib.asynccontextmanager
    async def open_setup(store: Any = None, **overrides: Any) -> AsyncIterator[Setup]:
        values: dict[str, Any] = {
            **UNIT_SETTINGS,
            "api_keys": f"{API_KEY},{OTHER_API_KEY}",
            **overrides,
        }
        settings = Settings(**values)
        provider = ControlledProvider(settings)
        relay = Relay.build(settings, provider=provider, store=store)
        recorder = Recorder("9999.1")
        for channel in ("orders", "other"):
            provider.hub.subscribe(recorder, channel)
        transport = httpx.ASGITransport(app=create_app(relay=relay))
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
            yield Setup(http, provider, recorder, relay)

    return open_setup


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + slug
    return body


async def test_a_repeat_gets_the_first_answer_and_publishes_nothing(build: Any) -> None:
    async with build() as s:
        first = await s.publish("order-7-v1")
        assert first.status_code == 200, first.text
        assert "idempotent-replayed" not in first.headers
        again = await s.publish("order-7-v1")
        assert again.status_code == 200, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        (receipt,) = first.json()["receipts"]
        assert re.fullmatch(r"[0-9a-f]{32}:0", receipt["id"]), receipt  # (caller, key) hashed
        assert s.provider.calls == 1
        assert len(s.recorder.deliveries) == 1


async def test_a_batch_repeat_gets_the_first_answer(build: Any) -> None:
    batch = {
        "batch": [
            {"name": "a", "channel": "orders", "data": "1"},
            {"name": "b", "channel": "other", "data": "2"},
        ]
    }
    async with build() as s:
        headers = {"X-API-Key": API_KEY, "Idempotency-Key": "batch-1"}
        first = await s.http.post("/v1/batch", json=batch, headers=headers)
        again = await s.http.post("/v1/batch", json=batch, headers=headers)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert again.json() == first.json()
        assert first.json()["accepted"] == 2
        assert again.headers["idempotent-replayed"] == "true"
        assert s.recorder.events == [("orders", "a", "1"), ("other", "b", "2")]


async def test_without_a_key_every_request_publishes(build: Any) -> None:
    async with build() as s:
        first, second = await s.publish(None), await s.publish(None)
        assert first.status_code == second.status_code == 200
        assert first.json()["receipts"][0]["id"] != second.json()["receipts"][0]["id"]
        assert len(s.recorder.deliveries) == 2


async def test_concurrent_repeats_publish_once(build: Any) -> None:
    async with build() as s:
        responses = await asyncio.gather(*(s.publish("burst-1") for _ in range(20)))
        assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
        assert len({r.text for r in responses}) == 1  # one answer for all
        replayed = [r.headers.get("idempotent-replayed") for r in responses]
        assert replayed.count("true") == 19
        assert s.provider.calls == 1
        assert len(s.recorder.deliveries) == 1


async def test_a_different_body_with_the_same_key_is_refused(build: Any) -> None:
    async with build() as s:
        assert (await s.publish("k-1")).status_code == 200
        changed = {**EVENT, "data": {"id": 8}}
        body = assert_problem(await s.publish("k-1", changed), 422, "idempotency-key-reused")
        assert "8" not in body["detail"]
        other_channel = {**EVENT, "channel": "other"}
        assert_problem(await s.publish("k-1", other_channel), 422, "idempotency-key-reused")
        assert len(s.recorder.deliveries) == 1


async def test_the_same_key_from_two_callers_does_not_collide(build: Any) -> None:
    async with build() as s:
        first = await s.publish("shared-key")
        second = await s.publish("shared-key", api_key=OTHER_API_KEY)
        assert first.status_code == second.status_code == 200
        assert "idempotent-replayed" not in second.headers
        assert s.provider.calls == 2
        assert len(s.recorder.deliveries) == 2
        # ... and a different body under the other caller's key is no reuse either.
        changed = await s.publish("mine", {**EVENT, "data": 1}, api_key=OTHER_API_KEY)
        assert changed.status_code == 200
        assert (await s.publish("mine", {**EVENT, "data": 2})).status_code == 200


@pytest.mark.parametrize(
    ("failure", "status", "slug"),
    [
        (ProviderError("refused", retryable=False), 502, "provider-error"),
        (ProviderUnavailable("down"), 503, "provider-unavailable"),
    ],
)
async def test_a_failed_first_request_releases_the_key(
    build: Any, failure: Exception, status: int, slug: str
) -> None:
    async with build() as s:
        s.provider.failures.append(failure)
        body = assert_problem(await s.publish("retry-me"), status, slug)
        assert body["accepted"] is False
        assert s.recorder.deliveries == []
        retry = await s.publish("retry-me")
        assert retry.status_code == 200, retry.text
        assert "idempotent-replayed" not in retry.headers
        assert len(s.recorder.deliveries) == 1
        assert (await s.publish("retry-me")).headers["idempotent-replayed"] == "true"


async def test_a_repeat_waiting_on_a_first_that_fails_publishes_itself(build: Any) -> None:
    async with build() as s:
        s.provider.gate = asyncio.Event()
        s.provider.failures.append(ProviderUnavailable("down"))
        first = asyncio.create_task(s.publish("shaky"))
        await eventually(lambda: s.provider.calls == 1)
        waiting = [asyncio.create_task(s.publish("shaky")) for _ in range(4)]
        await asyncio.sleep(0.1)  # the repeats are polling for the first answer
        assert s.provider.calls == 1
        s.provider.gate.set()
        responses = [await first, *[await task for task in waiting]]
        assert responses[0].status_code == 503
        assert sorted(r.status_code for r in responses[1:]) == [200] * 4
        assert sum(1 for r in responses if r.headers.get("idempotent-replayed")) == 3
        assert s.provider.calls == 2
        assert len(s.recorder.deliveries) == 1


@pytest.mark.parametrize(
    "key", ["", "has space", "x" * 201, "ключ".encode(), "a/b", "k\tey", "k:1"]
)
async def test_a_malformed_key_is_refused(build: Any, key: str | bytes) -> None:
    async with build() as s:
        assert_problem(await s.publish(key), 400, "invalid-request")
        assert s.recorder.deliveries == []


async def test_a_key_of_200_allowed_characters_is_accepted(build: Any) -> None:
    async with build() as s:
        key = ("Az09._~-" * 25)[:200]
        assert (await s.publish(key)).status_code == 200
        assert (await s.publish(key)).headers["idempotent-replayed"] == "true"


async def test_a_repeat_while_the_first_is_running_gets_409(build: Any) -> None:
    async with build(idempotency_wait_seconds=0.2) as s:
        s.provider.gate = asyncio.Event()
        first = asyncio.create_task(s.publish("slow-1"))
        await eventually(lambda: s.provider.calls == 1)
        busy = await s.publish("slow-1")
        assert_problem(busy, 409, "idempotency-in-progress")
        assert busy.headers["retry-after"] == "1"
        s.provider.gate.set()
        done = await first
        assert done.status_code == 200, done.text
        later = await s.publish("slow-1")
        assert later.headers["idempotent-replayed"] == "true"
        assert later.json() == done.json()
        assert s.provider.calls == 1
        assert len(s.recorder.deliveries) == 1


async def test_a_repeat_within_24_hours_is_replayed_and_after_is_new(build: Any) -> None:
    clock = Clock()
    async with build(store=MemoryStore(clock=clock)) as s:
        assert (await s.publish("daily")).status_code == 200
        clock.now += 24 * 3600 - 1
        assert (await s.publish("daily")).headers["idempotent-replayed"] == "true"
        clock.now += 2
        late = await s.publish("daily")
        assert late.status_code == 200
        assert "idempotent-replayed" not in late.headers
        assert len(s.recorder.deliveries) == 2


# -- an outcome the relay cannot know --------------------------------------------------------


async def test_a_timed_out_first_request_keeps_its_key_and_is_replayed(build: Any) -> None:
    async with build() as s:
        s.provider.failures.append(ProviderTimeout("pusher did not answer (ReadTimeout)"))
        first = await s.publish("late-1")
        problem = assert_problem(first, 504, "provider-timeout")
        assert problem["accepted"] is None
        assert "idempotent-replayed" not in first.headers
        for _ in range(3):
            again = await s.publish("late-1")
            assert again.status_code == 504
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json() == problem  # the first answer, as it was
        assert s.provider.calls == 1  # nothing sent again
        assert_problem(
            await s.publish("late-1", {**EVENT, "data": 9}), 422, "idempotency-key-reused"
        )
        assert (await s.publish("late-2")).status_code == 200  # a new key publishes


async def test_a_timed_out_request_is_resent_within_the_providers_id_window(build: Any) -> None:
    async with build() as s:
        s.provider.limits = msgspec.structs.replace(s.provider.limits, idempotent_ids_seconds=60)
        s.provider.failures.append(ProviderTimeout("no answer"))
        assert (await s.publish("late-3")).status_code == 504
        retry = await s.publish("late-3")
        assert retry.status_code == 200, retry.text
        assert "idempotent-replayed" not in retry.headers
        assert s.provider.calls == 2
        assert s.provider.sent[0] == s.provider.sent[1]  # the very same message ids
        again = await s.publish("late-3")
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == retry.json()
        assert s.provider.calls == 2


async def test_after_the_providers_id_window_a_retry_sends_nothing(build: Any) -> None:
    clock = Clock()
    async with build() as s:
        s.relay.publisher.idempotency.clock = clock
        s.provider.limits = msgspec.structs.replace(s.provider.limits, idempotent_ids_seconds=60)
        s.provider.failures.append(ProviderTimeout("no answer"))
        assert (await s.publish("late-4")).status_code == 504
        clock.now += 60
        late = await s.publish("late-4")
        assert_problem(late, 504, "provider-timeout")
        assert late.headers["idempotent-replayed"] == "true"
        assert s.provider.calls == 1


async def test_a_resend_that_fails_leaves_the_outcome_unknown(build: Any) -> None:
    async with build() as s:
        s.provider.limits = msgspec.structs.replace(s.provider.limits, idempotent_ids_seconds=60)
        s.provider.failures += [ProviderTimeout("no answer"), ProviderUnavailable("down")]
        assert (await s.publish("late-5")).status_code == 504
        resent = await s.publish("late-5")
        problem = assert_problem(resent, 504, "provider-timeout")
        assert problem["accepted"] is None  # not false: the first attempt may have delivered
        assert "down" in problem["detail"]
        assert (await s.publish("late-5")).status_code == 200  # still within the window
        assert s.provider.calls == 3


async def test_an_unexpected_error_keeps_the_key() -> None:
    idem = Idempotency(MemoryStore(), ttl=3600, wait=0)
    calls: list[int] = []

    async def crash() -> Any:
        calls.append(1)
        raise RuntimeError("a bug after the provider took it")

    with pytest.raises(RuntimeError):
        await idem.once("backend:k", "odd-1", "req", crash)
    with pytest.raises(TimeoutReplayed) as replayed:
        await idem.once("backend:k", "odd-1", "req", crash)
    assert replayed.value.extra["accepted"] is None
    assert replayed.value.headers() == {"Idempotent-Replayed": "true"}
    assert calls == [1]


async def test_a_claim_whose_process_died_is_an_unknown_outcome() -> None:
    clock = Clock()
    store = MemoryStore()
    idem = Idempotency(store, ttl=3600, wait=0, clock=clock)
    claim = {"state": "pending", "request": "req", "started": clock.now}
    await store.set("idem:backend:k:orphan", orjson.dumps(claim), ttl=3600)

    async def publish() -> Any:
        raise AssertionError("must not publish")

    with pytest.raises(IdempotencyInProgress):
        await idem.once("backend:k", "orphan", "req", publish)
    clock.now += PENDING_SECONDS
    with pytest.raises(TimeoutReplayed):
        await idem.once("backend:k", "orphan", "req", publish)


async def test_a_published_answer_is_returned_even_if_the_store_fails_to_keep_it() -> None:
    class Failing(MemoryStore):
        async def set(self, key: str, value: bytes, *, ttl: float) -> None:
            raise ProviderUnavailable("the Redis store failed: ConnectionError")

    idem = Idempotency(Failing(), ttl=3600, wait=0)

    async def publish() -> Any:
        return {"accepted": 1}

    assert await idem.once("backend:k", "kept", "req", publish) == ({"accepted": 1}, False)


# -- the per-caller quota ----------------------------------------------------------------------


async def test_a_caller_past_its_quota_gets_429_and_others_are_untouched(build: Any) -> None:
    async with build(idempotency_keys_per_caller=3) as s:
        mine = await s.publish("mine-1")
        for n in range(3):
            assert (await s.publish(f"theirs-{n}", api_key=OTHER_API_KEY)).status_code == 200
        refused = await s.publish("theirs-3", api_key=OTHER_API_KEY)
        body = assert_problem(refused, 429, "rate-limited")
        assert body["limit"] == 3
        assert int(refused.headers["retry-after"]) >= 1
        # Its old keys still replay; the other caller's key still replays and has room.
        assert (await s.publish("theirs-0", api_key=OTHER_API_KEY)).headers[
            "idempotent-replayed"
        ] == "true"
        again = await s.publish("mine-1")
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == mine.json()
        assert (await s.publish("mine-2")).status_code == 200
        assert s.provider.calls == 5


async def test_a_released_key_gives_its_quota_back(build: Any) -> None:
    async with build(idempotency_keys_per_caller=1) as s:
        s.provider.failures.append(ProviderUnavailable("down"))
        assert (await s.publish("k-1")).status_code == 503
        assert (await s.publish("k-2")).status_code == 200
        assert_problem(await s.publish("k-3"), 429, "rate-limited")
