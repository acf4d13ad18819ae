"""The lean socket server's own parts (providers/local/socket_server.py): the frame it writes,
the handshake's refusals, frames decided in order past the pause, one frame per broadcast, event
frames written once per loop pass in order with the session's own. Everything a pusher-js socket
sees is run on both transports by test_websocket.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from providers.local import socket_server
from providers.local.hub import Delivery
from providers.local.socket_server import MAX_PENDING_FRAMES, PusherSocket, text_frame
from tests.servers import serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from core.settings import Settings
    from providers.local.provider import LocalProvider
    from tests.servers import LiveServer


@pytest.fixture
async def lean(relay_app: FastAPI) -> AsyncIterator[LiveServer]:
    async with serve(relay_app, lean=True) as server:
        yield server


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 70_000])
def test_a_text_frame_is_the_frame_websockets_itself_writes(size: int) -> None:
    payload = b"x" * size
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame(payload) == expected


def test_a_broadcast_is_framed_once_for_every_subscriber() -> None:
    first, second = Delivery("update", "news", "1"), Delivery("update", "news", "2")
    wire = socket_server._wire(first)
    assert socket_server._wire(first) is wire  # the same bytes object: framed once
    assert wire == text_frame(first.pusher_frame().encode())
    assert socket_server._wire(second) == text_frame(second.pusher_frame().encode())


@pytest.mark.parametrize("path", ["/nowhere", "/app/", "/app/key/extra"])
async def test_a_socket_elsewhere_than_app_key_is_refused_at_the_handshake(
    lean: LiveServer, path: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(lean.ws_url + path, open_timeout=5):
            pass
    assert refused.value.response.status_code == 404


async def test_frames_of_one_socket_are_decided_in_order_past_the_pause(
    lean: LiveServer, relay_settings: Settings
) -> None:
    url = f"{lean.ws_url}/app/{relay_settings.app_key}?protocol=7"
    count = MAX_PENDING_FRAMES * 3  # reading pauses, then resumes
    async with connect(url, open_timeout=5) as ws:
        await ws.recv()  # connection_established
        for i in range(count):
            frame = {"event": "pusher:subscribe", "data": {"channel": f"room-{i}"}}
            await ws.send(orjson.dumps(frame).decode())
        answered = [orjson.loads(await ws.recv())["channel"] for _ in range(count)]
    assert answered == [f"room-{i}" for i in range(count)]


class _Transport:
    """What the socket writes, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _open_socket(*, limit: int = 10) -> tuple[PusherSocket, _Transport]:
    """A socket past its handshake, on a transport that records its writes."""
    provider = SimpleNamespace(
        settings=SimpleNamespace(send_buffer_frames=limit), connections=set()
    )
    shell = SimpleNamespace(access=lambda *_: None)
    socket = PusherSocket(
        cast("LocalProvider", provider),
        cast("Any", shell),
        registry=set(),
        max_frame_bytes=1 << 16,
        loop=asyncio.get_running_loop(),
    )
    transport = _Transport()
    socket.connection_made(cast("asyncio.Transport", transport))
    socket._ws.state = State.OPEN
    return socket, transport


def _events(*data: str) -> list[Delivery]:
    return [Delivery("update", "news", d) for d in data]


async def test_event_frames_of_one_loop_pass_are_written_in_one_write_in_order() -> None:
    socket, transport = _open_socket()
    deliveries = _events("1", "2", "3")
    for delivery in deliveries:
        socket.deliver(delivery)
    assert transport.writes == []  # held until the pass ends
    await asyncio.sleep(0)
    frames = [text_frame(d.pusher_frame().encode()) for d in deliveries]
    assert transport.writes == [b"".join(frames)]
    socket.deliver(later := Delivery("update", "news", "4"))
    await asyncio.sleep(0)
    assert transport.writes[1:] == [text_frame(later.pusher_frame().encode())]


async def test_a_reply_of_the_session_follows_the_event_frames_held_before_it() -> None:
    socket, transport = _open_socket()
    first, second = _events("1", "2")
    socket.deliver(first)
    socket._send('{"event":"pusher:pong","data":{}}')
    socket.deliver(second)
    await asyncio.sleep(0)
    assert transport.writes == [
        text_frame(first.pusher_frame().encode()),
        text_frame(b'{"event":"pusher:pong","data":{}}'),
        text_frame(second.pusher_frame().encode()),
    ]


async def test_a_close_follows_the_event_frames_held_and_nothing_after_it_is_written() -> None:
    socket, transport = _open_socket()
    (held,) = _events("1")
    socket.deliver(held)
    socket.close(4200)
    socket.deliver(Delivery("update", "news", "after the close"))
    await asyncio.sleep(0)
    assert transport.writes == [text_frame(held.pusher_frame().encode()), b"\x88\x02\x10\x68"]


async def test_a_slow_consumer_is_closed_with_4100_after_the_frames_it_had_room_for() -> None:
    socket, transport = _open_socket(limit=3)
    socket.pause_writing()  # the client stopped reading: the transport's buffer is full
    deliveries = _events("1", "2", "3", "4", "5")
    for delivery in deliveries:
        socket.deliver(delivery)
    await asyncio.sleep(0)
    frames = [text_frame(d.pusher_frame().encode()) for d in deliveries[:3]]
    assert transport.writes == [b"".join(frames), b"\x88\x02\x10\x04"]  # then 4100


async def test_a_socket_that_ends_while_frames_are_held_writes_none_of_them() -> None:
    socket, transport = _open_socket()
    socket.deliver(Delivery("update", "news", "1"))
    socket.connection_lost(None)
    await asyncio.sleep(0)
    assert transport.writes == []
