"""The POST to each URL and its retries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from core.provider import ChannelEvent
from core.webhooks.delivery import Sender, safe_url
from tests.unit.core.webhooks.conftest import config, sign

if TYPE_CHECKING:
    from tests.unit.core.webhooks.receiver import Receiver

EVENT = [ChannelEvent("channel_occupied", "news", 1)]


class Waits:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_a_500_is_retried_with_backoff_until_it_succeeds(
    receiver: tuple[Receiver, str],
) -> None:
    backend, url = receiver
    backend.failures = [500, 503]
    waits = Waits()
    sender = Sender(config(url, backoff_seconds=1.0), sign, sleep=waits)
    [answer] = await sender.send(EVENT)
    await sender.aclose()
    assert (answer.status, answer.attempts, answer.delivered) == (200, 3, True)
    assert backend.requests == 3
    assert backend.kinds() == [("channel_occupied", "news", None)]
    assert 0.5 <= waits.waits[0] <= 1.0
    assert 1.0 <= waits.waits[1] <= 2.0


async def test_a_4xx_is_final(receiver: tuple[Receiver, str]) -> None:
    backend, url = receiver
    backend.failures = [400]
    sender = Sender(config(url), sign, sleep=Waits())
    [answer] = await sender.send(EVENT)
    await sender.aclose()
    assert (answer.status, answer.attempts, answer.delivered) == (400, 1, False)
    assert backend.requests == 1


async def test_the_attempts_are_bounded() -> None:
    calls = []

    def timeout(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(timeout))
    sender = Sender(
        config("http://backend.test/hooks", attempts=4), sign, client=client, sleep=Waits()
    )
    [answer] = await sender.send(EVENT)
    await sender.aclose()
    assert (answer.status, answer.detail, answer.attempts) == (None, "timed out", 4)
    assert len(calls) == 4


async def test_every_url_gets_the_batch() -> None:
    seen: list[str] = []

    def ok(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(204)

    client = httpx.AsyncClient(transport=httpx.MockTransport(ok))
    urls = ("http://a.test/h", "https://b.test/h")
    sender = Sender(config(urls[0], urls=urls), sign, client=client)
    answers = await sender.send(EVENT)
    await sender.aclose()
    assert sorted(seen) == sorted(urls)
    assert all(a.delivered for a in answers)


def test_logs_show_no_query_or_credentials() -> None:
    assert safe_url("https://u:p@hooks.example.com:8443/in?token=x") == (
        "https://hooks.example.com:8443/in"
    )
