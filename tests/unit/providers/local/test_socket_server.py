"""The lean socket server's own parts (providers/local/socket_server.py): the frame it writes,
the handshake's refusals, frames decided in order past the pause, one frame per broadcast.
Everything a pusher-js socket sees is run on both transports by test_websocket.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode

from providers.local import socket_server
from providers.local.hub import Delivery
from providers.local.socket_server import MAX_PENDING_FRAMES, text_frame
from tests.servers import serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from core.settings import Settings
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
