"""Shutdown (issue 12, finding 12): stop accepting, wait (bounded) for a successor on the port,
then 4200 and `retry:`, 503 for publishes, all within `drain_seconds`.

Observed before: 4200 went out while the process still accepted, so pusher-js reconnected into
the dying process and was cut again with 1012; publishes answered 200 in that window reached no
one; open SSE streams kept the old process alive for as long as their clients stayed. Here the
relay is served in-process as `relay serve` serves it, and `should_exit` is what SIGTERM sets.
tests/e2e/test_restart_handover.py does the same with two `relay serve` processes and pusher-js.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket as socket_module
from typing import TYPE_CHECKING

import httpx
import orjson

from tests.security.relay_server import API_KEY, APP_KEY, Served, relay_serve
from tests.security.test_connection_caps import pusher
from tests.unit.conftest import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

DRAIN = 2.0
SLACK = 2.5  # scheduling on a busy machine


async def _publish(client: httpx.AsyncClient, name: str) -> httpx.Response:
    return await client.post(
        "/v1/events",
        json={"name": name, "channel": "news", "data": name},
        headers={"X-API-Key": API_KEY},
    )


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


@contextlib.asynccontextmanager
async def _stuck_websocket(relay: Served) -> AsyncIterator[None]:
    """A WebSocket whose client never reads again after the handshake, nor answers a close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(
        b"GET /app/%s?protocol=7 HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" % APP_KEY.encode()
    )
    await writer.drain()
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
    try:
        yield
    finally:
        writer.close()


async def test_the_listener_closes_before_sockets_are_told_to_reconnect() -> None:
    async with relay_serve(drain_seconds=DRAIN) as relay, pusher(relay) as socket:
        await socket.established()
        await socket.send({"event": "pusher:subscribe", "data": {"channel": "news"}})
        assert (await socket.next())["event"] == "pusher_internal:subscription_succeeded"
        async with httpx.AsyncClient(base_url=relay.base, timeout=5) as client:
            for i in range(50):
                assert (await _publish(client, f"e{i}")).status_code == 200
        relay.server.should_exit = True
        code, frames = await socket.closed_with()
        # The instant pusher-js would reconnect, nobody listens here any more.
        assert await _refused(relay.port)
    assert code == 4200
    assert [f["data"] for f in frames] == [f"e{i}" for i in range(50)]  # all queued, then 4200


async def test_clients_are_told_to_reconnect_once_a_successor_listens_on_the_port() -> None:
    async with relay_serve(drain_seconds=8) as relay, pusher(relay) as socket:
        await socket.established()
        relay.server.should_exit = True
        stopping = asyncio.get_running_loop().time()
        while not await _refused(relay.port):
            assert asyncio.get_running_loop().time() - stopping < 2, "still accepting"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # the successor is still starting: the clients stay served
        assert relay.provider.connections
        assert not relay.provider.draining
        successor = socket_module.create_server(("127.0.0.1", relay.port))
        listening = asyncio.get_running_loop().time()
        try:
            code, _ = await socket.closed_with()
            told = asyncio.get_running_loop().time() - listening
        finally:
            successor.close()
    assert code == 4200
    assert told < 0.5  # a poll or two, not the half of drain_seconds it would wait at most


async def test_ctrl_c_waits_for_no_successor() -> None:
    async with relay_serve(drain_seconds=8) as relay, pusher(relay) as socket:
        await socket.established()
        relay.server.stop_signal = signal.SIGINT  # what handle_exit records for Ctrl-C
        relay.server.should_exit = True
        code, _ = await socket.closed_with(within=2)
    assert code == 4200


async def test_publishes_while_draining_get_503_with_retry_after() -> None:
    async with (
        relay_serve(drain_seconds=DRAIN) as relay,
        httpx.AsyncClient(base_url=relay.base, timeout=5) as client,
    ):
        assert (await _publish(client, "before")).status_code == 200  # a kept-alive connection
        async with _stuck_websocket(relay):  # holds the drain open
            relay.server.should_exit = True
            await eventually(lambda: relay.provider.draining, within=DRAIN + SLACK)
            refused = await _publish(client, "during")
            health = await client.get("/health")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "urn:realtime-relay:problem:provider-unavailable"
        assert "shutting down" in refused.json()["detail"]
        assert health.status_code == 200  # liveness: the process is still up


async def test_sse_streams_end_after_what_was_queued_with_a_short_retry() -> None:
    async with (
        relay_serve(drain_seconds=DRAIN) as relay,
        httpx.AsyncClient(base_url=relay.base, timeout=5) as client,
        client.stream("GET", "/v1/stream", params={"channel": "news"}) as stream,
    ):
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith("retry: 3000")
        async with httpx.AsyncClient(base_url=relay.base, timeout=5) as publisher:
            for i in range(5):
                assert (await _publish(publisher, f"e{i}")).status_code == 200
        relay.server.should_exit = True
        rest: list[str] = []
        async with asyncio.timeout(DRAIN + SLACK):
            rest.extend([line async for line in lines])  # to the end of the stream
    frames = [orjson.loads(line[6:]) for line in rest if line.startswith("data: ")]
    events = [frame["data"] for frame in frames if frame["type"] == "event"]
    assert events == [f"e{i}" for i in range(5)]
    retry = [int(line[7:]) for line in rest if line.startswith("retry: ")]
    assert len(retry) == 1
    assert 250 <= retry[0] < 1000


async def test_the_drain_ends_within_drain_seconds_whatever_the_clients_do() -> None:
    async with relay_serve(drain_seconds=1.0) as relay:
        sse = httpx.AsyncClient(base_url=relay.base, timeout=5)
        async with (
            sse,
            sse.stream("GET", "/v1/stream", params={"channel": "news"}) as stream,
            _stuck_websocket(relay),
        ):
            assert stream.status_code == 200
            took = await relay.stop()
    assert took < 1.0 + SLACK


async def test_a_zero_drain_still_stops_at_once() -> None:
    async with relay_serve(drain_seconds=0) as relay, _stuck_websocket(relay):
        assert await relay.stop() < SLACK
