"""Stopping `relay serve` tells every connected pusher-js client to reconnect (Pusher code 4200)."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import orjson
import pytest
import websockets

from tests.e2e.conftest import APP_KEY, RELAY_ENV
from tests.e2e.harness import RelayProcess

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e


async def test_sigterm_closes_sockets_with_4200_after_sending_what_was_queued(
    tmp_path: Path,
) -> None:
    relay = RelayProcess(RELAY_ENV, tmp_path / "relay.log")
    try:
        url = f"ws://127.0.0.1:{relay.port}/app/{APP_KEY}?protocol=7"
        async with websockets.connect(url) as ws:
            hello = orjson.loads(await ws.recv())
            assert hello["event"] == "pusher:connection_established"
            await ws.send(orjson.dumps({"event": "pusher:subscribe", "data": {"channel": "x"}}))
            subscribed = orjson.loads(await ws.recv())
            assert subscribed["event"] == "pusher_internal:subscription_succeeded"
            relay.process.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4200
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert relay.process.wait(10) in (0, -signal.SIGTERM)
    finally:
        relay.stop()
