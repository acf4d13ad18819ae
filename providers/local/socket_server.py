"""The local provider's lean WebSocket server for `/app/{key}`: one asyncio protocol per socket.

`relay serve` hands every WebSocket upgrade to this protocol (app/socket_server.py installs it as
uvicorn's WebSocket protocol), so a pusher-js socket costs no ASGI call stack, no task and no
queue while it is idle: reads arrive as callbacks on websockets' sans-I/O `ServerProtocol`, the
Pusher session (providers/pusherproto/session.py) decides, and frames are written straight to the
transport. A task runs only while a frame is being decided (the session awaits its port and the
authorizing service), and frames of one socket are decided one after another, in order.

A broadcast is one WebSocket frame for every subscriber: no compression is negotiated (as soketi
does by default: see docs/scaling.md), and server frames are unmasked, so the bytes are the same
for all and are built once per broadcast (`_wire`). A consumer too slow to keep up is cut off: once
the transport's buffer passes its high-water mark (asyncio's flow control pauses writing), at most
`send_buffer_frames` more frames are buffered before the socket is closed with 4100, as the ASGI
transport's bounded queue did. Idle sockets are pinged after the activity timeout and closed with
4201 when no pong follows, by one timer each that only moves when it fires.

What the shell provides (the origin allowlist, the client's address behind proxies, the session's
configuration, the access log) comes in as a `SocketShell`; this module imports no web framework.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import parse_qs

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from core.webhooks.sink import emit
from providers.local import handshake
from providers.local.admission import Ticket
from providers.local.hub import Delivery
from providers.local.writebound import WriteBound
from providers.pusherproto import frames
from providers.pusherproto.frames import ErrorCode
from providers.pusherproto.session import Session
from providers.pusherproto.state import SessionState, new_socket_id

if TYPE_CHECKING:
    from providers.local.provider import LocalProvider
    from providers.pusherproto.config import SessionConfig
    from providers.pusherproto.outcome import Outcome

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_SECONDS = 5  # after our close frame, the client has this long to answer it
APP_PATH = "/app/"
# Frames of one socket waiting for the session: past this many, reading pauses (TCP pushes back)
# until the session has caught up, as a read loop that awaits each frame would.
MAX_PENDING_FRAMES = 16
_INVALID_UTF8 = object()  # a binary frame that is not UTF-8


class SocketShell(Protocol):
    """What the HTTP shell decides for a socket before and after its session."""

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a handshake from this page's origin is accepted."""

    def client_ip(
        self, headers: list[tuple[bytes, bytes]], peer: tuple[str, int] | None
    ) -> str | None:
        """The client's address (the peer, or behind trusted proxies their header)."""

    def session_config(self) -> SessionConfig:
        """What the socket's Pusher session decides by."""

    def access(self, path: str, status: int, started: float) -> None:
        """Log the socket once it ended (status 101, or the handshake's refusal)."""


_last_wire: tuple[Delivery | None, bytes] = (None, b"")


def _wire(delivery: Delivery) -> bytes:
    """The delivery's WebSocket frame, built once however many subscribers take it: the hub hands
    one delivery to every subscriber in turn, so remembering the last one is enough."""
    global _last_wire
    if _last_wire[0] is not delivery:
        _last_wire = (delivery, text_frame(delivery.pusher_frame().encode()))
    return _last_wire[1]


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


class PusherSocket(WriteBound, asyncio.Protocol):
    """One pusher-js socket: the handshake, then the Pusher session, callbacks only."""

    __slots__ = (
        "_close_timer",
        "_closing",
        "_last",
        "_loop",
        "_path",
        "_pending",
        "_ping_sent",
        "_reading_paused",
        "_registry",
        "_shell",
        "_started",
        "_status",
        "_ticket",
        "_timer",
        "_worker",
        "_ws",
        "channels",
        "provider",
        "session",
        "socket_id",
        "state",
        "transport",
    )

    def __init__(
        self,
        provider: LocalProvider,
        shell: SocketShell,
        *,
        registry: set[object],
        max_frame_bytes: int,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(provider.settings.send_buffer_frames)
        self.provider = provider
        self._shell = shell
        self._registry = registry  # uvicorn's connections, which its shutdown closes
        self._ws = ServerProtocol(max_size=max_frame_bytes)  # no extensions: no compression
        self._loop = loop or asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.state: SessionState | None = None
        self.session: Session | None = None
        self.socket_id = ""
        self.channels: set[str] = set()
        self._ticket: Ticket | None = None
        self._path = APP_PATH
        self._status = 0
        self._started = time.perf_counter()
        self._closing = False
        self._pending: deque[str | object] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._last = self._loop.time()  # the client's last frame
        self._ping_sent: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # -- what the hub and the provider see (hub.Socket) -------------------------------------
    @property
    def signed_in(self) -> str | None:
        """The user pusher:signin proved: the target of send_to_user and terminate_user."""
        return None if self.state is None else self.state.signed_in

    def deliver(self, delivery: Delivery) -> None:
        """Write an event frame now; a consumer too slow to keep up is closed with 4100."""
        self._write(_wire(delivery))

    def close(self, code: int) -> None:
        """Close with a Pusher code after what was written."""
        if self._closing or self.transport is None:
            return
        self._closing = True
        self._ws.send_close(code, "")
        self._flush()
        self._close_timer = self._loop.call_later(CLOSE_TIMEOUT_SECONDS, self._abort)

    def shutdown(self) -> None:
        """uvicorn's shutdown: the relay's drain asked these sockets to reconnect already."""
        self.close(ErrorCode.GENERIC_RECONNECT)

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The upgrade request follows in data_received."""
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is no subclass of it
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        """Bytes from the client: the handshake, then frames."""
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._frame(event)
        self._flush()

    def eof_received(self) -> bool | None:
        """The client half-closed: websockets decides what follows."""
        self._ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Leave every channel (announcing members who left for good), give the place back."""
        self._registry.discard(self)
        for timer in (self._timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._closing = True
        self.provider.connections.discard(self)
        if self._ticket is not None:
            self._ticket.release()
            self._ticket = None
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()  # a frame still being decided stops at its next await
        if self.session is not None:
            self._loop.create_task(self._leave(self.session, worker))
        else:
            self._shell.access(self._path, self._status, self._started)

    # -- the handshake ----------------------------------------------------------------------
    def _handshake(self, request: Request) -> None:
        path, _, query = request.path.partition("?")
        self._path = path
        origin = request.headers.get("Origin")
        if not self._shell.origin_allowed(origin):
            self._refuse_handshake(403, "this origin is not in RELAY_ALLOWED_ORIGINS")
            return
        key = path[len(APP_PATH) :]
        if not path.startswith(APP_PATH) or not key or "/" in key:
            self._refuse_handshake(404, "not found")
            return
        response = self._ws.accept(request)
        self._ws.send_response(response)
        self._flush()  # the 101 goes out before any frame is written
        if self._ws.state is not State.OPEN:  # not a valid WebSocket request: answered already
            self._status = response.status_code
            return
        self._status = 101
        raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.raw_items()
        ]
        client_ip = self._shell.client_ip(raw, self._peer())
        protocol = parse_qs(query).get("protocol", [None])[-1]
        settings = self.provider.settings
        refused = handshake.refusal(key, settings.app_key, protocol)
        ticket = refused or handshake.admit(self.provider, client_ip)
        if not isinstance(ticket, Ticket):
            code, message = ticket
            self._send(frames.error(message, code))
            self.close(code)
            return
        self._ticket = ticket
        self.state = SessionState(new_socket_id())
        self.socket_id = self.state.socket_id
        self.channels = self.state.channels  # the hub's view of the same set
        port = self.provider.session_port(self, self.state)
        self.session = Session(self._shell.session_config(), port, self.state, client_ip=client_ip)
        self.provider.connections.add(self)
        timeout = settings.activity_timeout_seconds
        self._send(frames.connection_established(self.socket_id, timeout))
        self._timer = self._loop.call_later(timeout, self._tick)

    def _refuse_handshake(self, status: int, text: str) -> None:
        self._status = status
        self._ws.send_response(self._ws.reject(status, text))
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def _peer(self) -> tuple[str, int] | None:
        peer = None if self.transport is None else self.transport.get_extra_info("peername")
        return (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None

    # -- frames -------------------------------------------------------------------------------
    def _frame(self, frame: Frame) -> None:
        self._last = self._loop.time()
        self._ping_sent = None
        if self.session is None or self._closing:
            return
        if frame.opcode is Opcode.TEXT:
            self._pend(bytes(frame.data).decode("utf-8"))  # websockets checked it is UTF-8
        elif frame.opcode is Opcode.BINARY:  # accepted when it is UTF-8 JSON, as Pusher does
            try:
                self._pend(bytes(frame.data).decode("utf-8"))
            except UnicodeDecodeError:
                self._pend(_INVALID_UTF8)
        # pings, pongs and the close are websockets' to answer

    def _pend(self, item: str | object) -> None:
        if self._pending is None:
            self._pending = deque()
        self._pending.append(item)
        if len(self._pending) >= MAX_PENDING_FRAMES and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        if self._worker is None:
            self._worker = self._loop.create_task(self._decide())

    async def _decide(self) -> None:
        session, pending = self.session, self._pending
        assert session is not None
        assert pending is not None
        try:
            while pending and not self._closing:
                item = pending.popleft()
                if isinstance(item, str):
                    outcome = await session.receive(item)
                else:
                    outcome = await session.invalid("Invalid frame: not UTF-8")
                self._carry_out(outcome)
                if self._reading_paused and len(pending) < MAX_PENDING_FRAMES // 2:
                    self._reading_paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
        except Exception:  # one frame's failure must not leave the socket half served
            log.exception("socket %s: a frame could not be decided", self.socket_id)
            self.close(ErrorCode.GENERIC_RECONNECT)
        finally:
            self._worker = None
            if not pending:
                self._pending = None  # an idle socket keeps no deque

    def _carry_out(self, outcome: Outcome) -> None:
        for reply in outcome.replies:
            self._send(reply)
        for broadcast in outcome.broadcasts:
            self.provider.broadcast(Delivery.of(broadcast, sender=self.socket_id))
        emit(outcome.hooks)
        if outcome.close is not None:
            self.close(outcome.close)

    async def _leave(self, session: Session, worker: asyncio.Task[None] | None) -> None:
        try:
            if worker is not None:  # the session is left once nothing else is deciding
                await asyncio.gather(worker, return_exceptions=True)
            outcome = await session.close()
            for broadcast in outcome.broadcasts:
                self.provider.broadcast(Delivery.of(broadcast, sender=self.socket_id))
            emit(outcome.hooks)
        finally:
            self._shell.access(self._path, self._status, self._started)

    # -- writing ------------------------------------------------------------------------------
    def _send(self, text: str) -> None:
        self._write(text_frame(text.encode()))

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if self._closing or transport is None:
            return
        if self._past_bound():
            log.warning("socket %s: send buffer full, disconnecting", self.socket_id)
            self.close(ErrorCode.OVER_CAPACITY)
            return
        transport.write(data)

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in self._ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:  # websockets is done with the connection: the server closes TCP
                transport.close()
                return
        if self._ws.state is State.CLOSED:
            transport.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- keeping the socket alive -------------------------------------------------------------
    def _tick(self) -> None:
        timeout = self.provider.settings.activity_timeout_seconds
        now = self._loop.time()
        if self._closing:
            return
        if self._ping_sent is not None:  # no frame since our ping
            if now - self._ping_sent >= handshake.PONG_TIMEOUT_SECONDS:
                self.close(ErrorCode.PONG_NOT_RECEIVED)
                return
            self._timer = self._loop.call_later(
                self._ping_sent + handshake.PONG_TIMEOUT_SECONDS - now, self._tick
            )
            return
        idle = now - self._last
        if idle < timeout:
            self._timer = self._loop.call_later(timeout - idle, self._tick)
            return
        self._send(frames.ping())
        self._ping_sent = now
        self._timer = self._loop.call_later(handshake.PONG_TIMEOUT_SECONDS, self._tick)
