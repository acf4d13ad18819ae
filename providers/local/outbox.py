"""A local socket's outgoing frames: a bounded queue drained by the socket's own writer task.

Nothing that sends to a socket ever waits for it: a broadcast to a thousand sockets queues a
thousand frames and returns. A consumer too slow to keep up is closed (4100, which pusher-js
retries after a backoff) rather than buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from starlette.websockets import WebSocketState

from providers.pusherproto.frames import ErrorCode

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

log = logging.getLogger(__name__)


class Outbox:
    """Frames queued for one WebSocket, and the close that follows them."""

    def __init__(self, websocket: WebSocket, *, size: int, label: str) -> None:
        self.websocket = websocket
        self._label = label  # the socket id, for the log line of a slow consumer
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=size)
        self._close_code: int | None = None

    @property
    def closing(self) -> bool:
        """Whether a close was asked for (no frame is queued after it)."""
        return self._close_code is not None

    def send(self, frame: str) -> None:
        """Queue a frame without blocking; a full queue closes the socket with 4100."""
        if self._close_code is not None:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("socket %s: send buffer full, disconnecting", self._label)
            self.close(ErrorCode.OVER_CAPACITY)

    def close(self, code: int) -> None:
        """Close the socket with a Pusher code once the queued frames are written."""
        if self._close_code is None:
            self._close_code = code
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)
            if self._queue.full():  # the close marker did not fit: drop what is pending
                while not self._queue.empty():
                    self._queue.get_nowait()
                self._queue.put_nowait(None)

    async def drain(self) -> None:
        """The writer: send queued frames until the close, then close the socket."""
        while True:
            frame = await self._queue.get()
            if frame is None:
                break
            await self.websocket.send_text(frame)
        if self.websocket.application_state is WebSocketState.CONNECTED:
            await self.websocket.close(self._close_code or 1000)
