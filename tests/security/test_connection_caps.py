"""Caps on WebSockets and SSE streams, subscriptions and invalid frames (issue 12, finding 5).

Observed before: no cap on sockets in total or per address (2,000 idle sockets added 157 MiB), one
socket subscribed to 100,000 channels, and a flood of invalid frames stalled /health for 2.3 s.
Each test configures a low cap, goes past it, and checks that /health still answers promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.security.relay_server import PROMPT_SECONDS, Served, health_latency, relay_serve
from tests.unit.conftest import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

PROBLEM = "application/problem+json"
PROBLEM_PREFIX = "urn:realtime-relay:problem:"


@contextlib.asynccontextmanager
async def pusher(relay: Served, *, forwarded_for: str | None = None) -> AsyncIterator[Socket]:
    """A protocol-level Pusher socket to the relay (not yet read from)."""
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    async with connect(
        relay.ws, ping_interval=None, open_timeout=5, additional_headers=headers
    ) as ws:
        yield Socket(ws)


class Socket:
    """JSON frames in and out of one WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def next(self, within: float = 3) -> dict[str, Any]:
        """The next frame."""
        frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.ws.recv(), within))
        return frame

    async def established(self) -> None:
        """Insist the first frame is connection_established."""
        assert (await self.next())["event"] == "pusher:connection_established"

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame."""
        await self.ws.send(orjson.dumps(frame).decode())

    async def closed_with(self, within: float = 5) -> tuple[int, list[dict[str, Any]]]:
        """Read until the server closes; the close code and every frame read before."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(within):
            while True:
                try:
                    seen.append(orjson.loads(await self.ws.recv()))
                except ConnectionClosed as closed:
                    received = closed.rcvd
                    break
        assert received is not None, "closed without a close frame"
        return received.code, seen


async def _refused_with(relay: Served, code: int, *, forwarded_for: str | None = None) -> str:
    async with pusher(relay, forwarded_for=forwarded_for) as socket:
        got, frames = await socket.closed_with()
    assert got == code
    assert frames[-1]["event"] == "pusher:error"
    assert frames[-1]["data"]["code"] == code
    message: str = frames[-1]["data"]["message"]
    return message


async def test_websockets_past_the_per_address_cap_are_refused_with_4004() -> None:
    async with (
        relay_serve(max_connections_per_ip=3) as relay,
        contextlib.AsyncExitStack() as stack,
    ):
        held = [await stack.enter_async_context(pusher(relay)) for _ in range(3)]
        for socket in held:
            await socket.established()
        message = await _refused_with(relay, 4004)
        assert message.startswith("Over connection quota")
        assert await health_latency(relay.base) < PROMPT_SECONDS
        await held[0].ws.close()
        async with pusher(relay) as again:  # a place was given back
            await again.established()


async def test_the_per_address_cap_counts_the_address_a_trusted_proxy_forwards() -> None:
    async with (
        relay_serve(max_connections_per_ip=2, trust_proxy_headers=True) as relay,
        contextlib.AsyncExitStack() as stack,
    ):
        for _ in range(2):
            socket = await stack.enter_async_context(pusher(relay, forwarded_for="198.51.100.7"))
            await socket.established()
        await _refused_with(relay, 4004, forwarded_for="198.51.100.7")
        async with pusher(relay, forwarded_for="198.51.100.8") as other:
            await other.established()


async def test_websockets_past_the_total_cap_are_refused_with_4100() -> None:
    async with (
        relay_serve(max_connections=3, max_connections_per_ip=100) as relay,
        contextlib.AsyncExitStack() as stack,
    ):
        for _ in range(3):
            socket = await stack.enter_async_context(pusher(relay))
            await socket.established()
        message = await _refused_with(relay, 4100)
        assert message.startswith("Over capacity")
        assert await health_latency(relay.base) < PROMPT_SECONDS


async def test_sse_streams_past_the_per_address_cap_get_429_problem() -> None:
    async with (
        relay_serve(max_connections_per_ip=2) as relay,
        httpx.AsyncClient(base_url=relay.base, timeout=5) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        socket = await stack.enter_async_context(pusher(relay))  # sockets and streams together
        await socket.established()
        stream = await stack.enter_async_context(
            client.stream("GET", "/v1/stream", params={"channel": "news"})
        )
        assert stream.status_code == 200
        refused = await client.get("/v1/stream", params={"channel": "news"})
        assert refused.status_code == 429
        assert refused.headers["content-type"] == PROBLEM
        assert refused.headers["retry-after"] == "10"
        assert refused.json()["type"] == PROBLEM_PREFIX + "rate-limited"
        assert await health_latency(relay.base) < PROMPT_SECONDS


async def test_sse_streams_past_the_total_cap_get_503_problem() -> None:
    async with (
        relay_serve(max_connections=2, max_connections_per_ip=100) as relay,
        httpx.AsyncClient(base_url=relay.base, timeout=5) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        for _ in range(2):
            socket = await stack.enter_async_context(pusher(relay))
            await socket.established()
        refused = await client.get("/v1/stream", params={"channel": "news"})
        assert refused.status_code == 503
        assert refused.headers["content-type"] == PROBLEM
        assert refused.json()["type"] == PROBLEM_PREFIX + "over-capacity"
        assert "retry-after" in refused.headers
        assert await health_latency(relay.base) < PROMPT_SECONDS


async def test_every_place_is_given_back_when_streams_and_sockets_end() -> None:
    async with relay_serve(max_connections_per_ip=5) as relay:
        async with httpx.AsyncClient(base_url=relay.base, timeout=5) as client:
            for _ in range(10):  # twice the cap, one after another
                async with client.stream("GET", "/v1/stream", params={"channel": "a"}) as r:
                    assert r.status_code == 200
                    await anext(r.aiter_lines())
                async with pusher(relay) as socket:
                    await socket.established()
        await eventually(lambda: relay.provider.admission.count == 0, within=3)


async def test_subscriptions_past_the_cap_get_a_subscription_error() -> None:
    async with relay_serve(max_subscriptions_per_connection=5) as relay, pusher(relay) as socket:
        await socket.established()
        for i in range(5):
            await socket.send({"event": "pusher:subscribe", "data": {"channel": f"c{i}"}})
            assert (await socket.next())["event"] == "pusher_internal:subscription_succeeded"
        await socket.send({"event": "pusher:subscribe", "data": {"channel": "c5"}})
        refused = await socket.next()
        assert refused["event"] == "pusher:subscription_error"
        assert refused["channel"] == "c5"
        assert refused["data"]["type"] == "TooManySubscriptions"
        assert refused["data"]["status"] == 400
        assert relay.provider.hub.subscriber_count("c5") == 0
        # Unsubscribing frees a place; the socket is still served.
        await socket.send({"event": "pusher:unsubscribe", "data": {"channel": "c0"}})
        await socket.send({"event": "pusher:subscribe", "data": {"channel": "c5"}})
        assert (await socket.next())["event"] == "pusher_internal:subscription_succeeded"


async def test_sse_with_more_channels_than_the_cap_is_400_too_many_items() -> None:
    async with (
        relay_serve(max_subscriptions_per_connection=5) as relay,
        httpx.AsyncClient(base_url=relay.base, timeout=5) as client,
    ):
        refused = await client.get("/v1/stream", params=[("channel", f"c{i}") for i in range(6)])
        assert refused.status_code == 400
        assert refused.json()["type"] == PROBLEM_PREFIX + "too-many-items"
        assert refused.json()["limit"] == 5
        assert relay.provider.admission.count == 0


async def test_a_flood_of_invalid_frames_is_closed_with_4010_and_health_answers() -> None:
    async with relay_serve(max_invalid_frames=20) as relay, pusher(relay) as socket:
        await socket.established()

        async def flood() -> None:
            with contextlib.suppress(ConnectionClosed):
                for _ in range(2_000):
                    await socket.ws.send("not json")

        flooding = asyncio.create_task(flood())
        try:
            latency = await health_latency(relay.base)
            code, frames = await socket.closed_with()
        finally:
            flooding.cancel()
        assert code == 4010
        errors = [f for f in frames if f["event"] == "pusher:error"]
        assert len(errors) == 21  # twenty answered, then the one that closes
        assert errors[-1]["data"]["code"] == 4010
        assert errors[-1]["data"]["message"].startswith("Too many invalid frames")
        assert latency < PROMPT_SECONDS


async def test_invalid_frames_up_to_the_cap_leave_the_socket_open() -> None:
    async with relay_serve(max_invalid_frames=20) as relay, pusher(relay) as socket:
        await socket.established()
        for _ in range(20):
            await socket.ws.send(b"\xff\xfe")  # binary, not UTF-8
            assert (await socket.next())["data"]["message"] == "Invalid frame: not UTF-8"
        await socket.send({"event": "pusher:ping", "data": {}})
        assert (await socket.next())["event"] == "pusher:pong"
