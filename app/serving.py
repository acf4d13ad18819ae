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
import signal
from typing import TYPE_CHECKING, Any, ClassVar, cast

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import PROBLEM_CONTENT_TYPE
from app.middleware import over_capacity_problem, request_timeout_problem

if TYPE_CHECKING:
    import socket
    from types import FrameType

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
LINGER_SECONDS = 2.0  # Apache's lingering close waits as long
# On SIGTERM with clients connected, at most this share of `drain_seconds` is spent waiting for a
# successor to listen on the port before the clients are told to reconnect.
HANDOVER_SHARE = 0.5
SUCCESSOR_POLL_SECONDS = 0.05


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
    pass: the local provider counts and caps its sockets itself.

    A connection closed after a response (408, `connection: close`) is closed lingering, as
    Apache and nginx do: closing a socket with unread input sends RST, and the client's kernel
    may then drop the response before the client has read it."""

    read_timeout: ClassVar[float]
    cap: ClassVar[int]
    waiting: ClassVar[dict[GuardedHttpProtocol, None]]  # insertion order: oldest first

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of a request arrived, its headers did not (yet)
        self._linger_timer: asyncio.TimerHandle | None = None

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
        """Forget the deadline."""
        self._headers_done()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

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
        """Headers in: no deadline (BodyLimit bounds the body); the cap applies from here."""
        self._headers_done()
        self._partial = False
        upgrade = self.parser.should_upgrade() and self._should_upgrade()
        path = self.url.partition(b"?")[0]
        over = len(self.connections) > self.cap or len(self.tasks) >= self.cap
        if not over or upgrade or path in UNCAPPED_PATHS:
            super().on_headers_complete()
            self._linger_on_close(upgrade)
            return
        log.warning("over the connection cap (%d): answering 503", self.cap)
        app = self.app
        self.app = _over_capacity
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        self._linger_on_close(upgrade)

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


class RelayServer(uvicorn.Server):
    """uvicorn's server with an orderly shutdown bounded by `drain_seconds`.

    On SIGTERM: stop accepting, so that a client told to reconnect cannot land on this process
    again. If clients are connected, wait (up to half the bound) for a successor to listen on the
    same port, serving them meanwhile: pusher-js, its first reconnection refused, waits out its
    15-second connection timeout before the next, so 4200 goes out once there is somewhere to
    go. Then `provider.drain()` (publishes refused with 503, WebSockets closed with 4200 after
    what was queued, SSE streams ended with a short `retry:`), a wait for those to close, and
    uvicorn's own shutdown with whatever time is left. Ctrl-C (SIGINT) waits for no successor."""

    def __init__(self, config: uvicorn.Config, *, provider: Provider, drain_seconds: float) -> None:
        super().__init__(config)
        self.provider = provider
        self.drain_seconds = drain_seconds
        self.stop_signal: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Remember which signal asked for the stop."""
        self.stop_signal = sig
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, hand the clients over, then shut down within the bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_seconds
        addresses = [s.getsockname() for server in self.servers for s in server.sockets]
        for server in self.servers:
            server.close()
        if self.stop_signal != signal.SIGINT and self._serving_clients():
            handover = loop.time() + self.drain_seconds * HANDOVER_SHARE
            # Polled: a process starting elsewhere signals nothing.
            while loop.time() < handover and not await _listened_on(addresses):  # noqa: ASYNC110
                await asyncio.sleep(SUCCESSOR_POLL_SECONDS)
        self.provider.drain()
        # Polled, as uvicorn polls the same set: connections signal nothing when they close.
        while loop.time() < deadline and self._serving_clients():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        # uvicorn's own wait gets whatever whole seconds are left; then it cancels what still runs.
        self.config.timeout_graceful_shutdown = max(0, int(deadline - loop.time()))
        await super().shutdown(sockets)

    def _serving_clients(self) -> bool:
        return any(map(_busy, self.server_state.connections))


async def _listened_on(addresses: list[Any]) -> bool:
    """Whether another process now listens on one of these (closed) listening addresses."""
    for address in addresses:
        host, port = address[0], address[1]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - a probe
        try:
            async with asyncio.timeout(SUCCESSOR_POLL_SECONDS * 4):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            continue
        # A connection to a port nobody listens on can meet itself (TCP simultaneous open).
        found = writer.get_extra_info("sockname") != writer.get_extra_info("peername")
        writer.close()
        if found:
            return True
    return False


def _busy(connection: object) -> bool:
    """Anything but an HTTP connection idle between requests (a socket, a stream, a request)."""
    if not isinstance(connection, HttpToolsProtocol):
        return True
    return connection.cycle is not None and not connection.cycle.response_complete
