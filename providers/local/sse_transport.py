"""The lean SSE driver: a stream written straight to its HTTP connection's transport.

`relay serve`'s HTTP protocol (app/guarded_http.py) offers each GET request's connection to the
app through a scope extension (LEND). The `/v1/stream` route, its gates passed, writes the
response's headers through ASGI as any response does, then borrows the connection: the request's
task ends, and what remains of an idle stream is the connection's protocol, this wire and the
`SseStream` in the hub. Each delivery's frame goes out as one chunk of the response's chunked
body, built once per broadcast however many streams take it (`chunk`).

A consumer too slow to keep up is cut off: once the transport's buffer passes its high-water mark
(asyncio pauses writing), at most `send_buffer_frames` more events are buffered; then the response
ends after them and the connection is closed (aborted if the client does not read it). A stream
ended otherwise (the drain's `retry:`) gives the connection back to the server, kept alive for
the client's next request as after any response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from providers.local.sse import HEARTBEAT
from providers.local.writebound import WriteBound

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from providers.local.sse import SseStream

# The scope extension (`scope["extensions"][LEND]["lend"]`): a callable lending the request's
# connection to a Borrower, answering the Lent connection, or None when it cannot be lent (the
# client is gone, the body is not chunked).
LEND = "relay.lend_connection"
LAST_CHUNK = b"0\r\n\r\n"
_HEARTBEAT_CHUNK = b"%x\r\n%s\r\n" % (len(HEARTBEAT), HEARTBEAT)


class Borrower(Protocol):
    """What the server tells whoever borrowed a connection."""

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark."""

    def resume_writing(self) -> None:
        """It drained below its low-water mark."""

    def connection_lost(self) -> None:
        """The connection is gone."""


class Lent(Protocol):
    """A connection lent to a response whose headers were written (chunked), until given back."""

    @property
    def transport(self) -> asyncio.Transport:
        """Where the body's chunks go."""

    def give_back(self, *, close: bool) -> None:
        """The response is complete: the server takes the connection back for the client's next
        request, or (`close`) closes it, not waiting long for a client that does not read."""


class ChunkedWire(WriteBound):
    """A stream's wire on its own connection: every frame one chunk, written at once."""

    __slots__ = ("_ended", "_lent", "_stream", "_transport")

    def __init__(self, stream: SseStream, limit: int) -> None:
        super().__init__(limit)
        self._stream = stream
        self._lent: Lent | None = None
        self._transport: asyncio.Transport | None = None
        self._ended = True  # until a connection is lent: nothing is written

    def borrow(self, lend: Callable[[Borrower], Lent | None]) -> bool:
        """Borrow the request's connection; False when the server cannot lend it."""
        lent = lend(self)
        if lent is None:
            return False
        self._lent, self._transport, self._ended = lent, lent.transport, False
        return True

    # -- Wire -----------------------------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        """A frame of the stream's own, written whatever the buffer holds (it is bounded by
        what the stream resumes)."""
        if not self._ended:
            assert self._transport is not None
            self._transport.write(chunk(frame))

    def push(self, frame: bytes) -> bool:
        """A live event; False once `limit` of them were buffered past the high-water mark."""
        if self._ended:
            return True
        if self._past_bound():
            return False
        assert self._transport is not None
        self._transport.write(chunk(frame))
        return True

    def heartbeat(self) -> None:
        """A heartbeat, unless the client has not read what was written already."""
        if not self._ended and not self._paused:
            assert self._transport is not None
            self._transport.write(_HEARTBEAT_CHUNK)

    def finish(self, *, cut: bool) -> None:
        """The body's last chunk, then the connection back to the server (closed when `cut`)."""
        if self._ended:
            return
        self._ended = True
        assert self._transport is not None
        assert self._lent is not None
        self._transport.write(LAST_CHUNK)
        self._lent.give_back(close=cut)

    # -- Borrower (pause_writing and resume_writing: WriteBound) --------------------------------
    def connection_lost(self) -> None:
        """The client left: the stream is over."""
        self._ended = True
        self._stream.close()


async def serve(stream: SseStream, lend: Callable[[Borrower], Lent | None]) -> None:
    """Run `stream` on the lent connection of its request, whose headers are written: open it
    (joins, `connected`, what it resumes), then leave it to the hub's deliveries."""
    wire = ChunkedWire(stream, stream.provider.settings.send_buffer_frames)
    if not wire.borrow(lend):
        stream.close()
        return
    await stream.open(wire)


_recent: list[bytes] = [b"", b"", b"", b""]  # the last two frames and their chunks, newest first


def chunk(frame: bytes) -> bytes:
    """The frame as one chunk of a chunked body, built once per frame: the hub hands a delivery
    to every subscriber in turn, and a delivery keeps its frames (one for streams resuming from
    the channel's history, one for the others), so the last two are remembered."""
    recent = _recent
    if frame is recent[0]:
        return recent[1]
    if frame is recent[2]:
        return recent[3]
    built = b"%x\r\n%s\r\n" % (len(frame), frame)
    recent[2], recent[3], recent[0], recent[1] = recent[0], recent[1], frame, built
    return built
