"""The retry loop, driven through a scripted transport and a classifier written for the test:
what is sent again, how long it waits, what the caller gets when the attempts run out, the
deadline of a whole call, and shutdown."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from core.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from providers.outbound.client import Outbound
from providers.outbound.policy import BACKOFF_BASE_SECONDS, RetryPolicy
from providers.outbound.verdict import Classifier, Verdict, retry_after

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable

HANG = "hang"  # the step never answers (until cancelled)
Step = int | type[httpx.TransportError] | tuple[int, float] | str


class Judge(Classifier):
    """2xx delivered, 400 refused, 429 limited, 5xx failed; transport errors as every provider."""

    name = "prov"
    item = "thing"

    def answer(self, response: httpx.Response) -> Verdict:
        match response.status_code:
            case 429:
                return Verdict.limited("limited (429)", retry_after(response))
            case ok if ok < 300:
                return Verdict.delivered()
            case refused if refused < 500:
                error = ProviderError(f"prov refused ({refused})", provider_status=refused)
                return Verdict.refused(error)
            case failed:
                return Verdict.failed(f"failed ({failed})")


class Deduplicating(Judge):
    deduplicates = True


@dataclass
class Script:
    """Answers each request with the next step (a status, (429, Retry-After), an error to
    raise, or HANG), then 200."""

    steps: list[Step] = field(default_factory=list)
    requests: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        step = self.steps.pop(0) if self.steps else 200
        if step == HANG:
            await asyncio.sleep(60)
        if isinstance(step, tuple):
            return httpx.Response(step[0], headers={"Retry-After": str(step[1])})
        if isinstance(step, int):
            return httpx.Response(step, json={"status": step})
        assert isinstance(step, type)
        raise step("scripted", request=request)


@dataclass
class Rig:
    script: Script
    http: httpx.AsyncClient
    waits: list[float] = field(default_factory=list)

    def outbound(self, classifier: Classifier | None = None, **policy: Any) -> Outbound:
        async def sleep(seconds: float) -> None:
            self.waits.append(seconds)

        values: dict[str, Any] = {"attempts": 3, "timeout_seconds": 5.0, **policy}
        return Outbound(
            classifier or Judge(),
            RetryPolicy(**values),
            base_url="http://prov.test",
            max_connections=4,
            http=self.http,
            sleep=sleep,
            jitter=lambda: 1.0,
        )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    script = Script()
    transport = httpx.MockTransport(script)
    async with httpx.AsyncClient(transport=transport, base_url="http://prov.test") as http:
        yield Rig(script, http)


def get(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return http.get("/thing")


async def send(outbound: Outbound) -> httpx.Response:
    return await outbound.send(get, call="GET /thing")


async def test_an_answer_on_the_first_attempt_is_returned(rig: Rig) -> None:
    response = await send(rig.outbound())
    assert response.status_code == 200
    assert rig.script.requests == 1
    assert rig.waits == []


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, 500, 503])
async def test_what_surely_was_not_delivered_is_sent_again_after_a_growing_wait(
    rig: Rig, failure: Step
) -> None:
    rig.script.steps = [failure, failure]
    response = await send(rig.outbound())
    assert response.status_code == 200
    assert rig.script.requests == 3
    assert rig.waits == [BACKOFF_BASE_SECONDS, BACKOFF_BASE_SECONDS * 2]


async def test_each_attempt_is_built_afresh(rig: Rig) -> None:
    rig.script.steps = [503]
    built: list[int] = []

    def attempt(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        built.append(len(built))
        return http.get("/thing")

    await rig.outbound().send(attempt, call="GET /thing")
    assert built == [0, 1]


async def test_a_refusal_is_raised_at_once(rig: Rig) -> None:
    rig.script.steps = [400]
    with pytest.raises(ProviderError, match=r"^prov refused \(400\)$") as caught:
        await send(rig.outbound())
    assert type(caught.value) is ProviderError
    assert caught.value.retryable is False
    assert caught.value.problem()["accepted"] is False
    assert rig.script.requests == 1
    assert rig.waits == []


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError])
async def test_maybe_delivered_is_504_at_once_where_the_provider_keeps_duplicates(
    rig: Rig, error: type[httpx.TransportError]
) -> None:
    rig.script.steps = [error]
    with pytest.raises(ProviderTimeout) as caught:
        await send(rig.outbound())
    assert caught.value.detail == (
        f"prov did not answer ({error.__name__}); the thing may or may not have been delivered"
    )
    assert caught.value.problem()["accepted"] is None
    assert caught.value.status == 504
    assert rig.script.requests == 1
    assert rig.waits == []


async def test_maybe_delivered_is_sent_again_where_the_provider_drops_duplicates(
    rig: Rig,
) -> None:
    rig.script.steps = [httpx.ReadTimeout, httpx.ReadTimeout]
    response = await send(rig.outbound(Deduplicating()))
    assert response.status_code == 200
    assert rig.script.requests == 3


@pytest.mark.parametrize(
    "steps",
    [
        [httpx.ReadTimeout] * 3,
        # Once one attempt went out unanswered, nobody knows: later failures do not change that.
        [httpx.ReadTimeout, httpx.ConnectError, 503],
        [503, httpx.ReadTimeout, (429, 1)],
    ],
)
async def test_exhausted_after_a_maybe_delivered_attempt_is_504(
    rig: Rig, steps: list[Step]
) -> None:
    rig.script.steps = list(steps)
    with pytest.raises(ProviderTimeout, match="after 3 attempts; the thing may or may not"):
        await send(rig.outbound(Deduplicating()))
    assert rig.script.requests == 3


async def test_a_refused_resend_of_a_maybe_delivered_call_is_504(rig: Rig) -> None:
    # The first attempt may have been delivered; the resend's 400 does not undo that.
    rig.script.steps = [httpx.ReadTimeout, 400]
    with pytest.raises(ProviderTimeout, match="may or may not have been delivered") as caught:
        await send(rig.outbound(Deduplicating()))
    assert caught.value.problem()["accepted"] is None
    assert "prov refused (400)" in caught.value.detail
    assert rig.script.requests == 2


@pytest.mark.parametrize(
    ("steps", "error_type", "detail"),
    [
        ([httpx.ConnectError] * 3, ProviderUnavailable, "prov unreachable (ConnectError)"),
        ([503, 500, httpx.PoolTimeout], ProviderUnavailable, "prov unreachable (PoolTimeout)"),
        ([httpx.ConnectError, 500, 503], ProviderError, "prov failed (503)"),
        ([500] * 3, ProviderError, "prov failed (500)"),
    ],
)
async def test_exhausted_the_last_attempt_says_unavailable_or_failed(
    rig: Rig, steps: list[Step], error_type: type[ProviderError], detail: str
) -> None:
    rig.script.steps = list(steps)
    with pytest.raises(ProviderError) as caught:
        await send(rig.outbound())
    assert type(caught.value) is error_type
    tried = " after 3 attempts" if error_type is ProviderUnavailable else ""
    assert caught.value.detail == detail + tried
    assert caught.value.retryable is True
    assert caught.value.problem()["accepted"] is False
    if error_type is ProviderUnavailable:
        assert caught.value.headers() == {"Retry-After": "1"}


async def test_a_limited_attempt_waits_for_its_retry_after_up_to_the_cap(rig: Rig) -> None:
    rig.script.steps = [(429, 3), (429, 600)]
    await send(rig.outbound(max_retry_wait_seconds=5))
    assert rig.waits == [3.0, 5.0]


async def test_a_retry_after_is_ignored_where_not_honoured(rig: Rig) -> None:
    rig.script.steps = [(429, 3)]
    await send(rig.outbound())
    assert rig.waits == [BACKOFF_BASE_SECONDS]


@pytest.mark.parametrize(("hint", "header"), [(2, "2"), (2.2, "3"), (0, "1")])
async def test_exhausted_while_limited_is_503_with_the_providers_retry_after(
    rig: Rig, hint: float, header: str
) -> None:
    rig.script.steps = [(429, hint)] * 3
    with pytest.raises(ProviderUnavailable, match=r"^prov limited \(429\) after 3 attempts$") as e:
        await send(rig.outbound(max_retry_wait_seconds=5))
    assert e.value.headers() == {"Retry-After": header}


async def test_exhausted_while_limited_without_a_hint_says_one_second(rig: Rig) -> None:
    rig.script.steps = [429] * 3
    with pytest.raises(ProviderUnavailable) as caught:
        await send(rig.outbound(max_retry_wait_seconds=5))
    assert caught.value.headers() == {"Retry-After": "1"}


@pytest.mark.parametrize("attempts", [1, 2, 5])
async def test_the_number_of_attempts_is_kept(rig: Rig, attempts: int) -> None:
    rig.script.steps = [500] * 10
    with pytest.raises(ProviderError):
        await send(rig.outbound(attempts=attempts))
    assert rig.script.requests == attempts
    assert len(rig.waits) == attempts - 1


# -- the deadline of one call ------------------------------------------------------------------


async def test_an_attempt_past_the_calls_deadline_is_cut_off_as_maybe_delivered(
    rig: Rig,
) -> None:
    rig.script.steps = [HANG]
    outbound = rig.outbound(attempts=2, timeout_seconds=0.05, backoff_cap_seconds=0.01)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderTimeout, match=r"did not answer within the call's 0\.11 s"):
        await send(outbound)
    assert asyncio.get_running_loop().time() - started < 1
    assert rig.script.requests == 1


async def test_nothing_is_sent_again_past_the_deadline_even_where_duplicates_drop(
    rig: Rig,
) -> None:
    rig.script.steps = [HANG, HANG, HANG]
    outbound = rig.outbound(Deduplicating(), timeout_seconds=0.02, backoff_cap_seconds=0.01)
    with pytest.raises(ProviderTimeout, match="after 1 attempts; the thing may or may not"):
        await send(outbound)
    assert rig.script.requests == 1


async def test_a_wait_that_would_end_past_the_deadline_is_not_started(rig: Rig) -> None:
    slow = [0.0]

    async def late_failure(http: httpx.AsyncClient) -> httpx.Response:
        await asyncio.sleep(0.12)  # most of the 0.15 s deadline gone, 0.05 s backoff to wait
        slow[0] += 1
        return await http.get("/thing")

    rig.script.steps = [503, 503]
    outbound = rig.outbound(attempts=2, timeout_seconds=0.05, backoff_cap_seconds=0.05)
    with pytest.raises(ProviderError, match=r"^prov failed \(503\)$"):
        await outbound.send(late_failure, call="GET /thing")
    assert slow == [1.0]
    assert rig.waits == []


async def test_a_timeout_of_the_attempts_own_is_not_taken_for_the_deadline(rig: Rig) -> None:
    async def broken(http: httpx.AsyncClient) -> httpx.Response:
        raise TimeoutError("not the loop's")

    with pytest.raises(TimeoutError, match="not the loop's"):
        await rig.outbound().send(broken, call="GET /thing")


# -- closing -----------------------------------------------------------------------------------


async def test_a_call_waiting_to_retry_when_closed_sends_nothing_more(rig: Rig) -> None:
    closing: list[Outbound] = []

    async def close_meanwhile(seconds: float) -> None:
        await closing[0].aclose()

    outbound = Outbound(
        Judge(),
        RetryPolicy(attempts=3, timeout_seconds=5),
        base_url="http://prov.test",
        max_connections=1,
        http=rig.http,
        sleep=close_meanwhile,
    )
    closing.append(outbound)
    rig.script.steps = [503]
    with pytest.raises(ProviderUnavailable, match="shutting down"):
        await send(outbound)
    assert rig.script.requests == 1
    assert not rig.http.is_closed  # a client it was given is its owner's to close


async def test_a_client_it_built_is_closed_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[httpx.AsyncClient] = []
    original = httpx.AsyncClient

    def factory(**kwargs: Any) -> httpx.AsyncClient:
        made.append(original(transport=httpx.MockTransport(Script()), **kwargs))
        return made[-1]

    monkeypatch.setattr(httpx, "AsyncClient", factory)
    outbound = Outbound(
        Judge(),
        RetryPolicy(attempts=1, timeout_seconds=2.5),
        base_url="http://prov.test",
        max_connections=3,
    )
    await send(outbound)
    await send(outbound)
    assert len(made) == 1
    assert made[0].timeout == httpx.Timeout(2.5)
    assert str(made[0].base_url) == "http://prov.test"
    await outbound.aclose()
    assert made[0].is_closed


# -- logs --------------------------------------------------------------------------------------


async def test_each_failed_attempt_is_logged_with_the_call_and_the_failure(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.script.steps = [httpx.ConnectError, 503]
    with caplog.at_level(logging.WARNING, logger="providers.outbound.client"):
        await send(rig.outbound())
    assert [r.getMessage() for r in caplog.records] == [
        "prov GET /thing attempt 1 of 3: unreachable (ConnectError)",
        "prov GET /thing attempt 2 of 3: failed (503)",
    ]
