"""`relay serve`'s uvicorn: read deadlines, a connection cap, and an orderly, bounded drain.

uvicorn alone waits for a request's headers and body as long as the client cares to trickle them,
counts no WebSocket against `limit_concurrency`, and on SIGTERM keeps accepting while it waits,
without a bound, for open streams to end. This module is what `relay serve` runs instead.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import PROBLEM_CONTENT_TYPE
from app.middleware import over_capacity_problem, request_timeout_problem

if TYPE_CHECKING:
    import socket

    from starlette.types import ASGIApp, Receive, Scope, Send

    from app.settings import Settings
    from providers.base import Provider

log = logging.getLogger(__name__)

WS_MAX_FRAME_BYTES = 64 * 1024
# Descriptors kept for everything that is not a client connection: the listening sockets, log
# files, outbound connections to Redis or a provider, imported modules.
FD_RESERVE = 64
MAX_BACKLOG = 2048  # uvicorn's default; the kernel caps it at net.core.somaxconn anyway
MIN_BACKLOG = 64
# Answered however many connections are open: a liveness probe that fails under load gets a
# healthy process restarted. It reads no body and is answered at once.
UNCAPPED_PATHS = frozenset({b"/health"})
OVER_CAPACITY_RETRY_AFTER = b"5"


def fit_to_descriptors(settings: Settings) -> Settings:
    """Settings whose `max_connections` the process's open-file limit can hold (one descriptor
    per connection): the soft limit is raised toward the hard one first, as Go's runtime does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = settings.max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return settings
    room = max(soft - FD_RESERVE, soft // 2, 1)
    log.warning(
        "RELAY_MAX_CONNECTIONS=%d needs %d file descriptors; the limit (ulimit -n) is %d: "
        "capping connections at %d",
        settings.max_connections,
        wanted,
        soft,
        room,
    )
    return settings.model_copy(update={"max_connections": room})


def build_config(app: ASGIApp, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration `relay serve` runs `app` with."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,  # the relay's own access log leaves query strings (tokens) out
        # Off whatever RELAY_TRUST_PROXY_HEADERS says: uvicorn's default trusts X-Forwarded-For
        # from 127.0.0.1 and rewrites the peer address; `Relay.client_ip` is the one reader.
        proxy_headers=False,
        http=guarded_protocol(settings),
        # The cap itself is applied by the protocol class, in problem+json; uvicorn's check is off.
        limit_concurrency=None,
        backlog=max(MIN_BACKLOG, min(settings.max_connections, MAX_BACKLOG)),
        ws_max_size=WS_MAX_FRAME_BYTES,
        ws_ping_interval=None,  # pusher-js pings at the protocol level
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.drain_seconds),
    )


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
    pass: the local provider counts and caps its sockets itself."""

    read_timeout: ClassVar[float]
    cap: ClassVar[int]
    waiting: ClassVar[dict[GuardedHttpProtocol, None]]  # insertion order: oldest first

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of a request arrived, its headers did not (yet)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline; past the cap, make room by closing the slowest."""
        super().connection_made(transport)
        self._await_headers()
        if len(self.connections) > self.cap:
            victim = next((p for p in self.waiting if p is not self), None)
            if victim is not None:
                victim._expire()
                # Counted out now, not when the event loop gets round to its connection_lost.
                self.connections.discard(victim)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline."""
        self._headers_done()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """The first byte of a request: a kept-alive connection's deadline starts here."""
        super().on_message_begin()
        self._partial = True
        if self._read_timer is None:
            self._await_headers()

    def on_headers_complete(self) -> None:
        """Headers in: no deadline (BodyLimit bounds the body); the cap applies from here."""
        self._headers_done()
        self._partial = False
        upgrade = self.parser.should_upgrade() and self._should_upgrade()
        path = self.url.partition(b"?")[0]
        over = len(self.connections) > self.cap or len(self.tasks) >= self.cap
        if not over or upgrade or path in UNCAPPED_PATHS:
            super().on_headers_complete()
            return
        log.warning("over the connection cap (%d): answering 503", self.cap)
        app = self.app
        self.app = _over_capacity
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def _await_headers(self) -> None:
        self.waiting[self] = None
        self._read_timer = self.loop.call_later(self.read_timeout, self._expire)

    def _headers_done(self) -> None:
        self.waiting.pop(self, None)
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _expire(self) -> None:
        self._headers_done()
        if self.transport.is_closing():
            return
        if self._partial:
            body = orjson.dumps(request_timeout_problem(self.read_timeout))
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (PROBLEM_CONTENT_TYPE.encode(), len(body), body)
            )
        self.transport.close()


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


class RelayServer(uvicorn.Server):
    """uvicorn's server with an orderly shutdown bounded by `drain_seconds`.

    On SIGTERM: stop accepting (a client told to reconnect must reach the next process, not
    this one), then `provider.drain()` (publishes refused with 503, WebSockets closed with 4200
    after what was queued, SSE streams ended with a short `retry:`), then wait for those to
    close, then uvicorn's own shutdown with whatever time is left."""

    def __init__(self, config: uvicorn.Config, *, provider: Provider, drain_seconds: float) -> None:
        super().__init__(config)
        self.provider = provider
        self.drain_seconds = drain_seconds

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, drain the provider's clients, then shut down within the bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_seconds
        for server in self.servers:
            server.close()
        self.provider.drain()
        # Polled, as uvicorn polls the same set: connections signal nothing when they close.
        while loop.time() < deadline and any(map(_busy, self.server_state.connections)):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        # uvicorn's own wait gets whatever whole seconds are left; then it cancels what still runs.
        self.config.timeout_graceful_shutdown = max(0, int(deadline - loop.time()))
        await super().shutdown(sockets)


def _busy(connection: object) -> bool:
    """Anything but an HTTP connection idle between requests (a socket, a stream, a request)."""
    if not isinstance(connection, HttpToolsProtocol):
        return True
    return connection.cycle is not None and not connection.cycle.response_complete
