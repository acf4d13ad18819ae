"""uvicorn's httptools protocol with a deadline on request headers, a connection cap, a
lingering close and connections lent to long responses, for `relay serve` (app/serving.py)."""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, cast

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.middleware import over_capacity_problem, request_timeout_problem
from core.errors import PROBLEM_CONTENT_TYPE
from providers.local.sse_transport import LEND

if TYPE_CHECKING:
    import asyncio

    from starlette.types import Receive, Scope, Send
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from core.settings import Settings
    from providers.local.sse_transport import Borrower

log = logging.getLogger(__name__)

# Answered however many connections are open: a liveness probe that fails under load gets a
# healthy process restarted. It reads no body and is answered at once.
UNCAPPED_PATHS = frozenset({b"/health"})
OVER_CAPACITY_RETRY_AFTER = b"5"
LINGER_SECONDS = 2.0  # Apache's lingering close waits as long
# A lent connection given back to be closed (a client too slow for its stream) gets this long to
# read what is buffered before it is aborted, as a socket gets to answer a close frame.
FLUSH_SECONDS = 5.0


def guarded_protocol(settings: Settings) -> type[GuardedHttpProtocol]:
    """An HTTP protocol class for one server, with its own read deadline, cap and queue."""

    class Protocol(GuardedHttpProtocol):
        read_timeout = settings.request_read_timeout_seconds
        cap = settings.max_connections
        waiting: ClassVar[dict[GuardedHttpProtocol, None]] = {}

    return Protocol


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline on each request's headers and a cap.

    A connection must deliver complete headers within `read_timeout` of opening (or, kept
    alive, of its next request's first byte): if not, it gets 408 (or, having sent nothing,
    is closed). When a new connection takes the count past `cap`, the oldest connection still
    waiting for its headers is closed the same way: slow and half-open requests cannot starve
    the process of descriptors. A request whose headers arrive while `cap` connections are
    open gets 503 problem+json, except for the paths in UNCAPPED_PATHS. WebSocket upgrades
    pass: the local provider counts and caps its sockets itself.

    A connection closed after a response (408, `connection: close`) is closed lingering, as
    Apache and nginx do: closing a socket with unread input sends RST, and the client's kernel
    may then drop the response before the client has read it.

    A GET request's scope carries the LEND extension (providers/local/sse_transport.py): once its
    response's headers are written, the app may borrow the connection and write the chunked body
    itself, from callbacks, with no task left running (the SSE stream). The request's cycle
    stays open (the connection counts as busy, for the drain) until the borrower gives the
    connection back; flow control and the connection's loss are passed on to it."""

    read_timeout: ClassVar[float]
    cap: ClassVar[int]
    waiting: ClassVar[dict[GuardedHttpProtocol, None]]  # insertion order: oldest first

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of a request arrived, its headers did not (yet)
        self._linger_timer: asyncio.TimerHandle | None = None
        self._loan: tuple[RequestResponseCycle, Borrower] | None = None
        self._flush_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline; past the cap, make room by closing the slowest."""
        super().connection_made(transport)
        self._await_headers()
        if len(self.connections) > self.cap:
            victim = next((p for p in self.waiting if p is not self), None)
            if victim is not None:
                victim._expire(linger=False)  # its descriptor is needed now
                # Counted out now, not when the event loop gets round to its connection_lost.
                self.connections.discard(victim)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline; tell a borrower."""
        self._headers_done()
        for timer in (self._linger_timer, self._flush_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)
        loan, self._loan = self._loan, None
        if loan is not None:
            loan[1].connection_lost()

    def pause_writing(self) -> None:
        """The transport's buffer is full: a borrower is told too."""
        super().pause_writing()
        if self._loan is not None:
            self._loan[1].pause_writing()

    def resume_writing(self) -> None:
        """The client caught up: a borrower is told too."""
        super().resume_writing()
        if self._loan is not None:
            self._loan[1].resume_writing()

    def data_received(self, data: bytes) -> None:
        """Parse, unless the connection is closing: then what still arrives is dropped."""
        if self._linger_timer is None:
            super().data_received(data)

    def on_message_begin(self) -> None:
        """The first byte of a request: a kept-alive connection's deadline starts here."""
        super().on_message_begin()
        self._partial = True
        if self._read_timer is None:
            self._await_headers()

    def on_headers_complete(self) -> None:
        """Headers in: no deadline (app.middleware.Front bounds the body); the cap applies here."""
        self._headers_done()
        self._partial = False
        upgrade = self.parser.should_upgrade() and self._should_upgrade()
        path = self.url.partition(b"?")[0]
        over = len(self.connections) > self.cap or len(self.tasks) >= self.cap
        if not over or upgrade or path in UNCAPPED_PATHS:
            super().on_headers_complete()
            self._linger_on_close(upgrade)
            if not upgrade and self.scope["method"] == "GET":
                extensions = self.scope.setdefault("extensions", {})
                extensions[LEND] = {"lend": _Lender(self, self.cycle)}
            return
        log.warning("over the connection cap (%d): answering 503", self.cap)
        app = self.app
        self.app = _over_capacity
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        self._linger_on_close(upgrade)

    def _lend(self, cycle: RequestResponseCycle, borrower: Borrower) -> GuardedHttpProtocol | None:
        """The connection, to a response whose headers went out chunked; None if it cannot be."""
        if (
            self._loan is not None
            or cycle.disconnected
            or not cycle.response_started
            or cycle.response_complete
            or not cycle.chunked_encoding
            or self.transport.is_closing()
        ):
            return None
        # The ASGI side is done: what it sends from now on is dropped, and its end, when the
        # request's task returns, neither completes the response nor closes the connection.
        cycle.disconnected = True
        # Nor is its scope needed past the request's task (which keeps its own reference): what
        # the app left in it (FastAPI's exit stacks, the route) is not held for the stream's life.
        cycle.scope = {"type": "http", "method": cycle.scope["method"]}  # type: ignore[typeddict-item]
        if self.cycle is cycle:
            self.scope = cycle.scope
            self.headers = []
        self._loan = (cycle, borrower)
        if self.flow.write_paused:
            borrower.pause_writing()
        return self

    def give_back(self, *, close: bool) -> None:
        """The borrowed response is complete: on to the next request, or close (abort after
        FLUSH_SECONDS if the client does not read what is buffered)."""
        loan, self._loan = self._loan, None
        if loan is None:
            return
        cycle = loan[0]
        cycle.response_complete = True
        if close:
            cycle.keep_alive = False
            self.transport.close()
            self._flush_timer = self.loop.call_later(FLUSH_SECONDS, self.transport.abort)
        elif not cycle.keep_alive:
            cycle.transport.close()  # lingering
        self.on_response_complete()

    def _linger_on_close(self, upgrade: bool) -> None:
        # The request's cycle closes the transport itself after a `connection: close` response.
        if not upgrade and self.cycle is not None:
            self.cycle.transport = cast("asyncio.Transport", _LingeringClose(self))

    def _linger(self) -> None:
        """Half-close (FIN after what is written), drop input, close on the client's EOF or
        after LINGER_SECONDS."""
        transport = self.transport
        if transport.is_closing() or self._linger_timer is not None:
            return
        if not transport.can_write_eof():
            transport.close()
            return
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, transport.close)
        transport.write_eof()
        transport.resume_reading()

    def _await_headers(self) -> None:
        self.waiting[self] = None
        self._read_timer = self.loop.call_later(self.read_timeout, self._expire)

    def _headers_done(self) -> None:
        self.waiting.pop(self, None)
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _expire(self, *, linger: bool = True) -> None:
        self._headers_done()
        if self.transport.is_closing():
            return
        if not self._partial:
            self.transport.close()
            return
        body = orjson.dumps(request_timeout_problem(self.read_timeout))
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (PROBLEM_CONTENT_TYPE.encode(), len(body), body)
        )
        if linger:
            self._linger()
        else:
            self.transport.close()


class _Lender:
    """A request's LEND extension. Weak references: the scope holding it is the cycle's, and a
    strong one would make every GET request a reference cycle for the garbage collector."""

    __slots__ = ("_cycle", "_protocol")

    def __init__(self, protocol: GuardedHttpProtocol, cycle: RequestResponseCycle) -> None:
        self._protocol = weakref.ref(protocol)
        self._cycle = weakref.ref(cycle)

    def __call__(self, borrower: Borrower) -> GuardedHttpProtocol | None:
        protocol, cycle = self._protocol(), self._cycle()
        if protocol is None or cycle is None:
            return None
        return protocol._lend(cycle, borrower)


class _LingeringClose:
    """The transport as a request's cycle sees it, whose close() lingers."""

    def __init__(self, protocol: GuardedHttpProtocol) -> None:
        self._protocol = protocol

    def close(self) -> None:
        """Close lingering."""
        self._protocol._linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol.transport, name)


async def _over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    detail = "the relay is at its connection cap; retry later"
    body = orjson.dumps(over_capacity_problem(detail, scope["path"]))
    headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"retry-after", OVER_CAPACITY_RETRY_AFTER),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
