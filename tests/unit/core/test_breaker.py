"""The circuit breaker per provider: closed, open after N retryable failures (503 + Retry-After),
one probe when half-open, closed again by a success, re-opened by a failed probe."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app.main import create_app
from app.relay import Relay
from core.breaker import CircuitBreaker
from core.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from core.settings import Settings
from providers.local.provider import LocalProvider
from tests.unit.conftest import UNIT_SETTINGS, Recorder, eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from core.provider import Message, Receipt

PROBLEM = "urn:realtime-relay:problem:"
API_KEY = str(UNIT_SETTINGS["api_keys"])
COOLDOWN = 0.5  # seconds, for the tests through the HTTP app (real time)


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


async def ok() -> str:
    return "ok"


async def unavailable() -> str:
    raise ProviderUnavailable("down")


async def refused() -> str:
    raise ProviderError("bad request", retryable=False)


def breaker(failures: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(failures=failures, cooldown=cooldown, clock=clock), clock


async def fail(b: CircuitBreaker, times: int, operation: Any = unavailable) -> None:
    for _ in range(times):
        with pytest.raises(ProviderError):
            await b.call(operation)


# --- the breaker on a fake clock ---------------------------------------------------------------


async def test_it_opens_after_n_retryable_failures_in_a_row() -> None:
    b, _ = breaker(failures=3)
    await fail(b, 2)
    assert b.state == "closed"
    assert await b.call(ok) == "ok"  # a success resets the count
    await fail(b, 2)
    assert b.state == "closed"
    await fail(b, 1)
    assert b.state == "open"


async def test_while_open_calls_fail_fast_with_the_time_left() -> None:
    b, clock = breaker(failures=1, cooldown=10)
    await fail(b, 1)
    called = False

    async def tracked() -> str:
        nonlocal called
        called = True
        return "ok"

    clock.now += 2.5
    with pytest.raises(ProviderUnavailable) as raised:
        await b.call(tracked)
    assert raised.value.retry_after == math.ceil(10 - 2.5)
    assert raised.value.headers() == {"Retry-After": "8"}
    assert raised.value.extra["accepted"] is False
    assert not called


async def test_timeouts_count_like_unavailability() -> None:
    b, _ = breaker(failures=2)

    async def timeout() -> str:
        raise ProviderTimeout("no answer")

    await fail(b, 2, timeout)
    assert b.state == "open"


async def test_refusals_do_not_count() -> None:
    b, _ = breaker(failures=2)
    await fail(b, 10, refused)
    assert b.state == "closed"
    await fail(b, 1)
    assert b.state == "closed"


async def test_other_exceptions_do_not_count() -> None:
    b, _ = breaker(failures=1)

    async def broken() -> str:
        raise RuntimeError("a bug, not the provider")

    with pytest.raises(RuntimeError):
        await b.call(broken)
    assert b.state == "closed"


async def test_half_open_lets_exactly_one_probe_through() -> None:
    b, clock = breaker(failures=1, cooldown=10)
    await fail(b, 1)
    clock.now += 10
    assert b.state == "half-open"
    gate = asyncio.Event()
    probes = 0

    async def probe() -> str:
        nonlocal probes
        probes += 1
        await gate.wait()
        return "ok"

    first = asyncio.create_task(b.call(probe))
    await eventually(lambda: probes == 1)
    results = await asyncio.gather(*(b.call(probe) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ProviderUnavailable) for r in results), results
    assert all(r.retry_after == 1 for r in results if isinstance(r, ProviderUnavailable))
    gate.set()
    assert await first == "ok"
    assert probes == 1
    assert b.state == "closed"
    assert await b.call(ok) == "ok"


async def test_a_failed_probe_reopens_for_a_full_cooldown() -> None:
    b, clock = breaker(failures=3, cooldown=10)
    await fail(b, 3)
    clock.now += 11
    await fail(b, 1)  # the probe
    assert b.state == "open"
    clock.now += 9.5
    with pytest.raises(ProviderUnavailable) as raised:
        await b.call(ok)
    assert raised.value.retry_after == 1
    clock.now += 0.5
    assert await b.call(ok) == "ok"
    assert b.state == "closed"


async def test_a_probe_that_is_refused_frees_the_next_probe() -> None:
    b, clock = breaker(failures=1, cooldown=10)
    await fail(b, 1)
    clock.now += 10
    await fail(b, 1, refused)  # the provider answered: not a failure, but no success either
    assert await b.call(ok) == "ok"  # the next call may probe, and closes it
    assert b.state == "closed"


async def test_a_cancelled_probe_frees_the_next_probe() -> None:
    b, clock = breaker(failures=1, cooldown=10)
    await fail(b, 1)
    clock.now += 10
    task = asyncio.create_task(b.call(lambda: asyncio.sleep(10)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await b.call(ok) == "ok"


# --- through the HTTP app ----------------------------------------------------------------------


class FlakyProvider(LocalProvider):
    """The local provider, failing as the test says; `gate` holds a publish until set."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.failing: Exception | None = None
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failing is not None:
            raise self.failing
        return await super().publish(messages)


@dataclass
class App:
    http: httpx.AsyncClient
    provider: FlakyProvider
    recorder: Recorder

    async def publish(self) -> httpx.Response:
        return await self.http.post(
            "/v1/events",
            json={"name": "e", "channel": "news", "data": "x"},
            headers={"X-API-Key": API_KEY},
        )


@pytest.fixture
async def app(relay_settings: Settings) -> AsyncIterator[App]:
    settings = Settings(
        **{**UNIT_SETTINGS, "breaker_failures": 3, "breaker_cooldown_seconds": COOLDOWN}
    )
    provider = FlakyProvider(settings)
    recorder = Recorder("9999.1")
    provider.hub.subscribe(recorder, "news")
    transport = httpx.ASGITransport(app=create_app(relay=Relay.build(settings, provider=provider)))
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
        yield App(http, provider, recorder)


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + slug
    assert body["accepted"] is False  # the caller is told the message was not taken
    return body


async def test_http_opens_then_answers_503_without_calling_the_provider(app: App) -> None:
    app.provider.failing = ProviderUnavailable("down", retry_after=7)
    for _ in range(3):
        response = await app.publish()
        assert_problem(response, 503, "provider-unavailable")
        assert response.headers["retry-after"] == "7"  # the provider's own hint, passed on
    assert app.provider.calls == 3
    open_answer = await app.publish()
    assert_problem(open_answer, 503, "provider-unavailable")
    assert open_answer.headers["retry-after"] == "1"  # what is left of the cooldown, rounded up
    assert app.provider.calls == 3  # fail fast: the provider was not called


async def test_http_refusals_never_open_it(app: App) -> None:
    app.provider.failing = ProviderError("refused", retryable=False)
    for _ in range(6):
        assert_problem(await app.publish(), 502, "provider-error")
    assert app.provider.calls == 6


async def test_http_half_open_probe_then_closed(app: App) -> None:
    app.provider.failing = ProviderUnavailable("down")
    for _ in range(3):
        await app.publish()
    await asyncio.sleep(COOLDOWN + 0.05)
    app.provider.failing = None
    app.provider.gate = asyncio.Event()
    probe = asyncio.create_task(app.publish())
    await eventually(lambda: app.provider.calls == 4)
    others = await asyncio.gather(*(app.publish() for _ in range(3)))
    for other in others:
        assert_problem(other, 503, "provider-unavailable")
    assert app.provider.calls == 4  # exactly one probe reached the provider
    app.provider.gate.set()
    assert (await probe).status_code == 200
    app.provider.gate = None
    assert (await app.publish()).status_code == 200
    assert len(app.recorder.deliveries) == 2


async def test_http_failed_probe_reopens(app: App) -> None:
    app.provider.failing = ProviderUnavailable("down")
    for _ in range(3):
        await app.publish()
    await asyncio.sleep(COOLDOWN + 0.05)
    assert_problem(await app.publish(), 503, "provider-unavailable")  # the probe, failed
    assert app.provider.calls == 4
    assert_problem(await app.publish(), 503, "provider-unavailable")
    assert app.provider.calls == 4  # open again
    app.provider.failing = None
    await asyncio.sleep(COOLDOWN + 0.05)
    assert (await app.publish()).status_code == 200
    assert app.recorder.events == [("news", "e", "x")]


async def test_http_timeouts_say_delivery_is_unknown(app: App) -> None:
    app.provider.failing = ProviderTimeout("no answer")
    response = await app.publish()
    assert response.status_code == 504
    assert response.json()["accepted"] is None


async def test_each_relay_has_its_own_breaker(relay_settings: Settings) -> None:
    a, b = Relay.build(relay_settings), Relay.build(relay_settings)
    assert a.publisher.breaker is not b.publisher.breaker
    assert a.publisher.breaker.failures == relay_settings.breaker_failures == 5
    assert a.publisher.breaker.cooldown == relay_settings.breaker_cooldown_seconds == 10.0
    await a.aclose()
    await b.aclose()
