"""The lean SSE driver: streams on connections lent by `relay serve`'s HTTP protocol.

What every stream does (events, resume, gates) is tested on both drivers in test_sse.py; here,
what only this one does: no task per idle stream, heartbeats from one timer, a slow consumer cut
off past the transport's high-water mark and the bound, the ticket and the presence given back
when the client leaves, and the drain's `retry:` with the connection kept for the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from app import guarded_http
from app.main import create_app
from providers.local.hub import Delivery
from providers.local.sse import Heartbeats
from providers.local.sse_transport import LAST_CHUNK, chunk
from tests.unit.conftest import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from fastapi import FastAPI

    from core.settings import Settings
    from providers.local.provider import LocalProvider
    from tests.servers import LiveServer
    from tests.unit.conftest import Recorder


class RawStream:
    """An EventSource-like client on a bare socket: one GET, then the chunked body by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self._text = b""  # decoded body not yet split into blocks
        self.ended = False  # the body's last chunk arrived

    async def request(self, target: str, headers: dict[str, str] | None = None) -> None:
        """Send a GET and read the answer's head."""
        lines = [f"GET {target} HTTP/1.1", "Host: relay"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 3)
        status, *fields = head.decode("latin-1").split("\r\n")
        self.status = int(status.split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields if f)}
        self._text = b""
        self.ended = False

    async def chunk(self) -> bytes:
        """The next chunk's bytes (b"" for the last one)."""
        size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
        data = await self.reader.readexactly(size + 2)
        if size == 0:
            self.ended = True
        return data[:-2]

    async def block(self, within: float = 3.0) -> dict[str, str] | None:
        """The next SSE block's fields (`comment` for `: ...`); None at the end of the body."""
        async with asyncio.timeout(within):
            while b"\n\n" not in self._text:
                if self.ended:
                    return None
                self._text += await self.chunk()
        block, _, self._text = self._text.partition(b"\n\n")
        fields: dict[str, str] = {}
        for line in block.decode().split("\n"):
            name, _, value = line.partition(":")
            fields["comment" if name == "" else name] = value.removeprefix(" ")
        return fields

    async def event(self, within: float = 3.0) -> dict[str, Any]:
        """The next event's data, past heartbeats."""
        while True:
            block = await self.block(within)
            assert block is not None, "the stream ended"
            if "data" in block:
                data: dict[str, Any] = orjson.loads(block["data"])
                return data

    def close(self) -> None:
        """Leave, as a closed tab does."""
        self.writer.close()


@pytest.fixture
async def lean(relay_app: FastAPI, relay_serve: Callable[..., Any]) -> AsyncIterator[LiveServer]:
    """`relay_app` on `relay serve`'s HTTP protocol, which lends streams their connection."""
    async with relay_serve(relay_app, guarded=True) as server:
        yield server


@pytest.fixture
def connect(lean: LiveServer) -> Callable[..., contextlib.AbstractAsyncContextManager[RawStream]]:
    """`async with connect("/v1/stream?channel=news") as stream:` on the lean server."""
    return _connector(lean.port)


async def _opened(stream: RawStream) -> dict[str, Any]:
    assert stream.status == 200
    hello = await stream.block()
    assert hello is not None
    assert hello["retry"] == "3000"
    data: dict[str, Any] = orjson.loads(hello["data"])
    assert data["type"] == "connected"
    return data


async def test_the_stream_is_chunked_server_sent_events(connect: Callable[..., Any]) -> None:
    async with connect("/v1/stream?channel=news&channel=sport") as stream:
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        assert stream.headers["transfer-encoding"] == "chunked"
        assert (await _opened(stream))["channels"] == ["news", "sport"]


async def test_idle_streams_hold_no_task_and_share_one_heartbeat_timer(
    connect: Callable[..., Any], relay_provider: LocalProvider, relay_settings: Settings
) -> None:
    before = len(asyncio.all_tasks())
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(connect("/v1/stream?channel=news")) for _ in range(20)
        ]
        for stream in streams:
            await _opened(stream)
        await eventually(lambda: len(asyncio.all_tasks()) <= before)
        assert len(relay_provider.streams) == 20
        assert len(Heartbeats.of(relay_settings.sse_heartbeat_seconds)) == 20
        for stream in streams:  # every one beaten, none silent past the interval (0.2 s)
            assert await stream.block(within=1) == {"comment": "heartbeat"}
        relay_provider.broadcast(Delivery("note", "news", "to all"))
        for stream in streams:
            assert (await stream.event())["data"] == "to all"
    await eventually(lambda: not relay_provider.streams)
    assert len(Heartbeats.of(relay_settings.sse_heartbeat_seconds)) == 0
    assert relay_provider.admission.count == 0


async def test_a_frame_is_chunked_once_per_broadcast() -> None:
    frame = Delivery("e", "news", "x").sse_frame("abcd1234")
    built = chunk(frame)
    assert built == b"%x\r\n%s\r\n" % (len(frame), frame)
    assert chunk(frame) is built
    other = Delivery("e", "news", "y").sse_frame("abcd1234")
    assert chunk(other) is chunk(other)
    assert chunk(frame) is built  # the last two are kept: a stream resuming from history takes
    # another frame of the same delivery than its neighbours do


async def _cut_off(provider: LocalProvider, stream: RawStream) -> int:
    """Broadcast 16 kB events to a stream that reads nothing until it is cut off; how many."""
    await _opened(stream)
    sent = 0
    payload = "x" * 16_000
    while provider.streams and sent < 5_000:  # not read: the buffers fill, then the bound
        provider.broadcast(Delivery("e", "news", f"{sent}:{payload}"))
        sent += 1
    assert not provider.streams, "never cut off"
    assert provider.admission.count == 0  # the place is given back at once
    await eventually(lambda: provider.hub.subscriber_count("news") == 0)
    return sent


@pytest.fixture
def small_buffer(relay_settings: Settings) -> FastAPI:
    """The app with a send buffer of 10 frames past the transport's high-water mark."""
    return create_app(relay_settings.model_copy(update={"send_buffer_frames": 10}))


async def test_a_slow_consumer_is_cut_off_after_the_bound_without_a_gap(
    small_buffer: FastAPI, relay_serve: Callable[..., Any]
) -> None:
    provider: LocalProvider = small_buffer.state.relay.provider
    async with relay_serve(small_buffer, guarded=True) as server:
        connect = _connector(server.port)
        async with connect("/v1/stream?channel=news", receive_buffer=4096) as stream:
            sent = await _cut_off(provider, stream)
            received: list[int] = []
            while (block := await stream.block(within=5)) is not None:
                if "data" in block:
                    received.append(int(orjson.loads(block["data"])["data"].partition(":")[0]))
            assert stream.ended  # the body's last chunk, after every frame buffered
            assert received == list(range(len(received)))  # in order, none missing
            assert 0 < len(received) < sent  # what was over the bound was never written
            assert await stream.reader.read() == b""  # and the connection is closed


async def test_a_cut_off_consumer_that_does_not_read_is_aborted(
    small_buffer: FastAPI, relay_serve: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guarded_http, "FLUSH_SECONDS", 0.2)
    provider: LocalProvider = small_buffer.state.relay.provider
    loop = asyncio.get_running_loop()
    async with relay_serve(small_buffer, guarded=True) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # never read until the end
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.port))
            await loop.sock_sendall(
                sock, b"GET /v1/stream?channel=news HTTP/1.1\r\nHost: r\r\n\r\n"
            )
            await eventually(lambda: bool(provider.streams))
            for n in range(5_000):
                provider.broadcast(Delivery("e", "news", f"{n}:{'x' * 16_000}"))
                if not provider.streams:
                    break
            assert not provider.streams, "never cut off"
            await asyncio.sleep(0.5)  # past FLUSH_SECONDS
            received = b""
            with contextlib.suppress(ConnectionError):
                while data := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 5):
                    received += data
            assert received.startswith(b"HTTP/1.1 200")
            assert not received.endswith(LAST_CHUNK)  # dropped with what was buffered


async def test_a_client_that_leaves_gives_its_place_back_and_leaves_presence(
    connect: Callable[..., Any],
    relay_provider: LocalProvider,
    relay_token: Callable[..., str],
    relay_listen: Callable[..., Recorder],
) -> None:
    member = relay_listen("presence-room")
    async with connect(f"/v1/stream?channel=presence-room&token={relay_token('alice')}") as s:
        await _opened(s)
        assert relay_provider.admission.count == 1
        assert [m.user_id for m in relay_provider.hub.members("presence-room")] == ["alice"]
        assert member.events[-1][1] == "pusher_internal:member_added"
    await eventually(lambda: not relay_provider.hub.members("presence-room"))
    assert member.events[-1][1] == "pusher_internal:member_removed"
    assert orjson.loads(member.deliveries[-1].data) == {"user_id": "alice"}
    assert relay_provider.admission.count == 0
    assert not relay_provider.streams
    assert relay_provider.hub.subscriber_count("presence-room") == 1  # the recorder only


async def test_the_drain_ends_streams_with_a_short_retry_and_keeps_the_connection(
    connect: Callable[..., Any], relay_provider: LocalProvider
) -> None:
    async with connect("/v1/stream?channel=news") as stream:
        await _opened(stream)
        relay_provider.broadcast(Delivery("e", "news", "before"))
        relay_provider.drain()
        assert (await stream.event())["data"] == "before"
        block = await stream.block()
        assert block is not None
        assert 250 <= int(block["retry"]) < 1000
        assert await stream.block() is None  # the body's end
        assert relay_provider.admission.count == 0
        await stream.request("/health")  # kept alive, as after any response
        assert stream.status == 200
    await eventually(lambda: relay_provider.hub.subscriber_count("news") == 0)


def _connector(port: int) -> Callable[..., contextlib.AbstractAsyncContextManager[RawStream]]:
    """Connect to `port` and GET `target` (`receive_buffer`: the client's socket buffer, bytes)."""

    @contextlib.asynccontextmanager
    async def connect_(target: str, *, receive_buffer: int = 0) -> AsyncIterator[RawStream]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:  # before connecting: the window is agreed in the handshake
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        stream = RawStream(reader, writer)
        try:
            await stream.request(target)
            yield stream
        finally:
            stream.close()

    return connect_
