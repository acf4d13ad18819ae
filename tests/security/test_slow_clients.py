"""Slow and half-open HTTP requests (issue 12, finding 5): a deadline on headers and bodies, a
connection cap, and /health answering throughout.

Observed before: 100 connections trickling their requests were still open after 60 s, and with
`ulimit -n 256`, 300 half-open requests took /health down. Here: 50 trickling connections, a
1-second deadline, and a subprocess at `ulimit -n 128` under 150 half-open connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import orjson

from tests.security.conftest import free_port
from tests.security.relay_server import (
    API_KEY,
    PROMPT_SECONDS,
    SETTINGS,
    health_latency,
    relay_serve,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable

PROBLEM = "application/problem+json"
DEADLINE = 1.0  # request_read_timeout_seconds in these tests
# A closed connection is seen within the deadline plus this (timer, scheduling, a busy machine).
SLACK = 2.5
PARTIAL_HEADERS = b"GET /health HTTP/1.1\r\nHost: relay\r\n"


class RawConnection:
    """A TCP connection that writes what it is told, when it is told."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        """Connect to 127.0.0.1:port."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def write(self, data: bytes) -> None:
        """Send bytes; a connection the server closed swallows them."""
        with contextlib.suppress(ConnectionError):
            self.writer.write(data)
            await self.writer.drain()

    async def trickle(self, data: bytes, every: float) -> None:
        """Send one byte every `every` seconds until the server closes the connection."""
        for byte in data:
            if self.writer.is_closing() or self.reader.at_eof():
                return
            await self.write(bytes([byte]))
            await asyncio.sleep(every)

    async def until_closed(self, within: float) -> bytes:
        """Everything the server sends until it closes; fail if still open after `within`."""
        async with asyncio.timeout(within):
            try:
                return await self.reader.read()
            except ConnectionError:
                return b""

    def close(self) -> None:
        """Close our side."""
        self.writer.close()


def _response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _assert_408_problem(raw: bytes) -> None:
    status, headers, body = _response(raw)
    assert status == 408, raw[:200]
    assert headers["content-type"] == PROBLEM
    assert headers["connection"] == "close"
    problem = orjson.loads(body)
    assert problem["type"] == "urn:realtime-relay:problem:request-timeout"
    assert problem["status"] == 408


async def _all(awaitables: list[Awaitable[bytes]]) -> list[bytes]:
    return list(await asyncio.gather(*awaitables))


async def test_trickled_headers_get_408_within_the_deadline_and_health_answers() -> None:
    async with relay_serve(request_read_timeout_seconds=DEADLINE) as relay:
        slow = [await RawConnection.open(relay.port) for _ in range(50)]
        started = time.monotonic()
        trickles = [
            asyncio.create_task(c.trickle(PARTIAL_HEADERS + b"X-Slow: " + b"a" * 100, 0.1))
            for c in slow
        ]
        try:
            await asyncio.sleep(0.3)  # every connection is mid-headers
            assert await health_latency(relay.base) < PROMPT_SECONDS
            answers = await _all([c.until_closed(DEADLINE + SLACK) for c in slow])
            elapsed = time.monotonic() - started
        finally:
            for task in trickles:
                task.cancel()
            for c in slow:
                c.close()
        for raw in answers:
            _assert_408_problem(raw)
        assert elapsed < DEADLINE + SLACK


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer() -> None:
    async with relay_serve(request_read_timeout_seconds=DEADLINE) as relay:
        idle = await RawConnection.open(relay.port)
        try:
            assert await idle.until_closed(DEADLINE + SLACK) == b""
        finally:
            idle.close()


async def test_a_kept_alive_connection_gets_a_deadline_for_each_request() -> None:
    async with relay_serve(request_read_timeout_seconds=DEADLINE) as relay:
        conn = await RawConnection.open(relay.port)
        try:
            await conn.write(PARTIAL_HEADERS + b"\r\n")
            first = await asyncio.wait_for(conn.reader.readuntil(b"}"), 5)
            assert _response(first)[0] == 200
            await asyncio.sleep(DEADLINE + 0.2)  # idle between requests: keep-alive's business
            await conn.write(b"GET /he")
            raw = await conn.until_closed(DEADLINE + SLACK)
        finally:
            conn.close()
        _assert_408_problem(raw)


async def test_trickled_body_gets_408_problem_within_the_deadline() -> None:
    body = orjson.dumps({"name": "e", "channel": "news", "data": "x" * 100})
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        b"X-API-Key: %s\r\nContent-Length: %d\r\n\r\n" % (API_KEY.encode(), len(body))
    )
    async with relay_serve(request_read_timeout_seconds=DEADLINE) as relay:
        slow = [await RawConnection.open(relay.port) for _ in range(20)]
        for c in slow:
            await c.write(head + body[:10])
        started = time.monotonic()
        trickles = [asyncio.create_task(c.trickle(body[10:], 0.1)) for c in slow]
        try:
            assert await health_latency(relay.base) < PROMPT_SECONDS
            answers = await _all([c.until_closed(DEADLINE + SLACK) for c in slow])
            elapsed = time.monotonic() - started
        finally:
            for task in trickles:
                task.cancel()
            for c in slow:
                c.close()
        for raw in answers:
            status, headers, problem = _response(raw)
            assert status == 408
            assert headers["content-type"] == PROBLEM
            assert orjson.loads(problem)["type"] == "urn:realtime-relay:problem:request-timeout"
            assert orjson.loads(problem)["instance"] == "/v1/events"
        assert elapsed < DEADLINE + SLACK


async def test_a_body_sent_in_time_is_served() -> None:
    async with (
        relay_serve(request_read_timeout_seconds=DEADLINE) as relay,
        httpx.AsyncClient(base_url=relay.base, timeout=5) as client,
    ):
        answer = await client.post(
            "/v1/events",
            json={"name": "e", "channel": "news", "data": "x" * 10_000},
            headers={"X-API-Key": API_KEY},
        )
        assert answer.status_code == 200, answer.text


async def test_requests_over_the_cap_get_503_problem_but_health_answers() -> None:
    async with (
        relay_serve(max_connections=4, max_connections_per_ip=4) as relay,
        httpx.AsyncClient(base_url=relay.base, timeout=5) as streams,
        contextlib.AsyncExitStack() as stack,
    ):
        for _ in range(4):  # four long-lived requests: the cap
            response = await stack.enter_async_context(
                streams.stream("GET", "/v1/stream", params={"channel": "news"})
            )
            assert response.status_code == 200
        async with httpx.AsyncClient(base_url=relay.base, timeout=5) as other:
            refused = await other.get("/v1/channels/news")
        assert refused.status_code == 503
        assert refused.headers["content-type"] == PROBLEM
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["type"] == "urn:realtime-relay:problem:over-capacity"
        assert await health_latency(relay.base) < PROMPT_SECONDS


async def test_at_the_cap_a_new_connection_closes_the_oldest_half_open_one() -> None:
    async with relay_serve(max_connections=10, request_read_timeout_seconds=30) as relay:
        half_open = []
        for _ in range(10):
            conn = await RawConnection.open(relay.port)
            await conn.write(PARTIAL_HEADERS)
            half_open.append(conn)
            await asyncio.sleep(0.01)  # in order: the first is the oldest
        try:
            assert await health_latency(relay.base) < PROMPT_SECONDS
            _assert_408_problem(await half_open[0].until_closed(SLACK))
            assert not half_open[-1].reader.at_eof()
        finally:
            for conn in half_open:
                conn.close()


def _limited_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


async def test_half_open_requests_past_the_descriptor_limit_leave_health_up(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELAY_")},
        **{f"RELAY_{k.upper()}": str(v) for k, v in SETTINGS.items()},
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(port),
        "RELAY_REQUEST_READ_TIMEOUT_SECONDS": "30",  # the cap, not the deadline, must save it
    }
    log = tmp_path / "relay.log"
    relay_bin = Path(sys.executable).with_name("relay")
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(relay_bin),
            "serve",
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limited_descriptors,
        )
    base = f"http://127.0.0.1:{port}"
    half_open: list[RawConnection] = []
    try:
        async with asyncio.timeout(20):
            while True:
                with contextlib.suppress(httpx.HTTPError, AssertionError):
                    await health_latency(base)
                    break
                assert process.returncode is None, log.read_text()
                await asyncio.sleep(0.1)
        for _ in range(150):  # more than the 128 descriptors the process may hold
            conn = await RawConnection.open(port)
            await conn.write(PARTIAL_HEADERS)
            half_open.append(conn)
        await asyncio.sleep(0.2)
        assert await health_latency(base) < PROMPT_SECONDS
        assert "capping connections at 64" in log.read_text()
    finally:
        for conn in half_open:
            conn.close()
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
