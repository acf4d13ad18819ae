"""A malformed Last-Event-ID on GET /v1/stream: a 400 problem before the stream, nothing logged.

The header is the client's: `<epoch>-²` (byte 0xb2, which the server reads as Latin-1 `²`, a
character `str.isdigit` accepts and `int` refuses) once answered 500 with two ERROR tracebacks
per request. Only ids of no shape the relay sends are refused: an id of another process epoch
(the relay restarted) still opens the stream and replays nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httpx
import orjson
import pytest

from tests.security.conftest import API_HEADERS, PROBLEM, PROBLEM_PREFIX, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.security.conftest import Target

MALFORMED = {
    "superscript-two": b"EPOCH-\xb2",
    "arabic-indic-digit": "EPOCH-\u0661".encode(),
    "no-sequence": b"EPOCH-",
    "no-epoch": b"-1",
    "no-dash": b"garbage",
    "negative": b"EPOCH--1",
    "sign": b"EPOCH-+1",
    "spaces": b"EPOCH- 1",
    "too-long-sequence": b"EPOCH-" + b"9" * 21,
    "too-long-epoch": b"e" * 33 + b"-1",
    "huge": b"EPOCH-" + b"1" * 4000,
}


@pytest.fixture
async def relay(local_target: Target, lean_sse: bool) -> AsyncIterator[httpx.AsyncClient]:
    """The local relay under uvicorn, as a browser's EventSource reaches it."""
    async with serve(local_target.app, guarded=lean_sse) as port:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            yield client


def _epoch(target: Target) -> bytes:
    assert target.local is not None
    return target.local.hub.epoch.encode()


@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_last_event_id_is_400_problem_and_logs_no_error(
    relay: httpx.AsyncClient,
    local_target: Target,
    caplog: pytest.LogCaptureFixture,
    header: bytes,
) -> None:
    caplog.set_level(logging.INFO)
    assert local_target.local is not None
    before = local_target.local.hub.subscriber_count("open-forge")  # the suite's listener
    sent = header.replace(b"EPOCH", _epoch(local_target))
    async with relay.stream(
        "GET", "/v1/stream", params={"channel": "open-forge"}, headers={b"Last-Event-ID": sent}
    ) as response:
        assert response.status_code == 400  # not a stream (the old code opened one, or 500)
        await response.aread()
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == PROBLEM_PREFIX + "invalid-request"
    assert body["status"] == 400
    assert "Last-Event-ID" in body["detail"]
    assert sent.decode("latin-1") not in response.text  # the header is not echoed
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert local_target.local.hub.subscriber_count("open-forge") == before


@pytest.mark.parametrize("header", [b"deadbeef-1", b"0123abcd-99999999999", b"EPOCH-0"])
async def test_well_formed_ids_still_open_the_stream(
    relay: httpx.AsyncClient, local_target: Target, header: bytes
) -> None:
    sent = header.replace(b"EPOCH", _epoch(local_target))
    async with relay.stream(
        "GET", "/v1/stream", params={"channel": "open-forge"}, headers={b"Last-Event-ID": sent}
    ) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await anext(lines) == "retry: 3000"
        hello = orjson.loads((await anext(lines)).removeprefix("data: "))
        assert hello["type"] == "connected"


async def test_an_id_ahead_of_the_newest_delivery_holds_nothing_back(
    relay: httpx.AsyncClient, local_target: Target
) -> None:
    # `<epoch>-<huge>` is well formed but sent by no relay: resuming after it would skip every
    # live event up to that number, silently. It replays nothing and live events flow.
    ahead = _epoch(local_target) + b"-99999999999"
    async with relay.stream(
        "GET", "/v1/stream", params={"channel": "open-forge"}, headers={b"Last-Event-ID": ahead}
    ) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await anext(lines) == "retry: 3000"
        assert orjson.loads((await anext(lines)).removeprefix("data: "))["type"] == "connected"
        published = await local_target.publish(API_HEADERS, key=None, data={"n": 1})
        assert published.is_success, published.text
        line = await asyncio.wait_for(anext(lines), 5)
        while not line.startswith("data: "):
            line = await asyncio.wait_for(anext(lines), 5)
        assert orjson.loads(line.removeprefix("data: "))["data"] == {"n": 1}
