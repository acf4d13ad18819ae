"""Idempotency-Key on POST /v1/events and /v1/batch: a repeat gets the first answer, publishes
nothing; concurrent repeats publish once; a changed body is refused; a failure frees the key."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app.errors import ProviderError, ProviderUnavailable
from app.main import create_app
from app.relay import Relay
from app.settings import Settings
from app.stores.memory import MemoryStore
from providers.local.provider import LocalProvider
from tests.unit.conftest import UNIT_SETTINGS, Recorder, eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from providers.base import Message, Receipt

PROBLEM = "urn:realtime-relay:problem:"
API_KEY = str(UNIT_SETTINGS["api_keys"])
OTHER_API_KEY = "idempotency-second-api-key-0123"
EVENT = {"name": "order", "channel": "orders", "data": {"id": 7}}


class ControlledProvider(LocalProvider):
    """The local provider, with a publish that can be held at a gate or made to fail."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.failures: list[Exception] = []

    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        self.calls += 1
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
            yield Setup(http, provider, recorder)

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
        assert [r["id"] for r in first.json()["receipts"]] == ["order-7-v1:0"]
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
