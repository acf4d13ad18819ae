"""Fan-out: a bounded pool, retries with backoff for what may pass, gone and failed reported."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from providers.apigateway.fanout import Fanout, Report
from providers.apigateway.management import Answer, ManagementApi
from tests.e2e.management_stub import ManagementStub

if TYPE_CHECKING:
    import pytest


class CountingApi:
    """A management API double that counts posts in flight."""

    def __init__(self, answers: dict[str, list[Answer]] | None = None) -> None:
        self.in_flight = 0
        self.most = 0
        self.calls: list[str] = []
        self.answers = answers or {}

    async def post(self, connection_id: str, data: bytes) -> Answer:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.calls.append(connection_id)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        queued = self.answers.get(connection_id)
        return queued.pop(0) if queued else Answer(200)


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


async def test_never_more_than_the_concurrency_in_flight() -> None:
    api = CountingApi()
    fanout = Fanout(api, concurrency=7)  # type: ignore[arg-type]
    report = await fanout.send([f"c{i}" for i in range(100)], b"x")
    assert report.sent == 100
    assert api.most == 7
    assert sorted(api.calls) == sorted(f"c{i}" for i in range(100))


async def test_duplicates_are_posted_once() -> None:
    api = CountingApi()
    report = await Fanout(api, concurrency=4).send(["a", "b", "a"], b"x")  # type: ignore[arg-type]
    assert report.sent == 2
    assert sorted(api.calls) == ["a", "b"]


async def test_retryable_failures_are_retried_with_backoff() -> None:
    api = CountingApi(
        {
            "slow": [Answer(429, "LimitExceededException"), Answer(503, "503")],
            "down": [Answer(500, "500")] * 5,
        }
    )
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    fanout = Fanout(api, concurrency=2, attempts=3, sleep=sleep, jitter=lambda: 1.0)  # type: ignore[arg-type]
    report = await fanout.send(["slow", "down", "fine"], b"x")
    assert report.sent == 2  # "slow" made it on its third attempt
    assert report.failed == {"down": "500"}
    assert api.calls.count("slow") == 3
    assert api.calls.count("down") == 3
    assert sorted(delays) == [0.05, 0.05, 0.1, 0.1]  # doubling, full jitter at its top here


async def test_gone_and_permanent_failures_are_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = CountingApi(
        {"gone": [Answer(410, "GoneException")], "big": [Answer(400, "PayloadTooLargeException")]}
    )
    with caplog.at_level(logging.WARNING, logger="providers.apigateway.fanout"):
        report = await Fanout(api, sleep=no_sleep).send(["gone", "big", "ok"], b"x")  # type: ignore[arg-type]
    assert report.gone == ["gone"]
    assert report.failed == {"big": "PayloadTooLargeException"}
    assert api.calls.count("gone") == 1
    assert api.calls.count("big") == 1
    assert "PayloadTooLargeException x1" in caplog.text
    assert "big" not in caplog.text.replace("PayloadTooLargeException", "")  # no ids in logs


async def test_against_the_stub_with_latency() -> None:
    async with ManagementStub(latency=0.02, gone={"c3"}) as stub:
        api = ManagementApi(stub.endpoint, None, max_connections=10)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            report = await Fanout(api, concurrency=10).send([f"c{i}" for i in range(50)], b"e")
            elapsed = loop.time() - started
        finally:
            await api.aclose()
    assert report.sent == 49
    assert report.gone == ["c3"]
    assert len(stub.posts) == 49
    # 50 posts of 20 ms, 10 at a time: 0.1 s ideally; far from 1 s sequentially.
    assert 0.09 < elapsed < 0.6


def test_report_summary() -> None:
    one = Report(sent=3, gone=["a", "c"], failed={"b": "500", "d": "500", "e": "403"})
    assert one.summary() == "sent 3, gone 2, failed 3 403 x1, 500 x2"
