"""`relay serve`'s uvicorn: read deadlines, a connection cap, and an orderly, bounded drain.

uvicorn alone waits for a request's headers and body as long as the client cares to trickle them,
counts no WebSocket against `limit_concurrency`, and on SIGTERM keeps accepting while it waits,
without a bound, for open streams to end. This module is what `relay serve` runs instead; its
HTTP protocol (deadlines, cap, lingering close) is app/guarded_http.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import signal
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.guarded_http import guarded_protocol
from app.socket_server import lean_socket_protocol

if TYPE_CHECKING:
    import socket
    from types import FrameType

    from starlette.types import ASGIApp

    from app.relay import Relay
    from core.provider import Provider
    from core.settings import Settings

log = logging.getLogger(__name__)

WS_MAX_FRAME_BYTES = 64 * 1024
# Descriptors kept for everything that is not a client connection: the listening sockets, log
# files, outbound connections to Redis or a provider, imported modules.
FD_RESERVE = 64
MAX_BACKLOG = 2048  # uvicorn's default; the kernel caps it at net.core.somaxconn anyway
MIN_BACKLOG = 64
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
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
            except (OSError, ValueError):  # macOS refuses more than its OPEN_MAX, whatever `hard`
                pass
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


def backlog(settings: Settings) -> int:
    """The listening socket's backlog: room for a burst of connections, within the kernel's."""
    return max(MIN_BACKLOG, min(settings.max_connections, MAX_BACKLOG))


def build_config(
    app: ASGIApp, settings: Settings, *, host: str, port: int, relay: Relay | None = None
) -> uvicorn.Config:
    """The uvicorn configuration `relay serve` runs `app` with: on the local provider, its
    WebSockets served by the lean socket server (app/socket_server.py) instead of through ASGI."""
    ws: Any = "auto"
    if relay is not None and relay.provider.part("local") is not None:
        ws = lean_socket_protocol(relay, max_frame_bytes=WS_MAX_FRAME_BYTES)
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
        backlog=backlog(settings),
        ws=ws,
        ws_max_size=WS_MAX_FRAME_BYTES,
        ws_ping_interval=None,  # pusher-js pings at the protocol level
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.drain_seconds),
    )


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
