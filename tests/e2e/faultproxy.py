"""An HTTP/1.1 proxy that injects faults between the relay and a provider's server (soketi).

The relay's provider host and port point at the proxy; the proxy reads each request the relay
sends and gives it one action, drawn in arrival order from `random.Random(seed)` with the
configured shares, so a run with the same seed and the same request order injects the same faults:

    forward   pass the request upstream and the answer back
    delay     wait `delay` seconds (keep it below the relay's timeout), then forward
    reset     reset the relay's connection (TCP RST); nothing was sent upstream
    fail      answer 503 itself; nothing was sent upstream

Those four have unambiguous outcomes: a delayed request is delivered, the others are not. The
ambiguous ones are never drawn, only scheduled for the next request with `schedule()`:

    forward_then_reset   forward, read the upstream answer, then reset the relay's connection
    forward_then_close   forward, read the answer, then close the connection without answering
    forward_then_hang    forward, read the answer, then say nothing until the relay gives up

Every request is recorded (action, method, path, body) for the tests' assertions. The proxy runs
its own event loop in a thread, so blocking test code (pusher-js agents, sync HTTP) cannot stall it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

ACTIONS = ("forward", "delay", "reset", "fail")
AMBIGUOUS = ("forward_then_reset", "forward_then_close", "forward_then_hang")
FORWARDING = frozenset({"forward", "delay", *AMBIGUOUS})
MAX_HEAD_BYTES = 64 * 1024
FAILURE = b"proxy: injected failure"


@dataclass(frozen=True, slots=True)
class Call:
    """One request the proxy read, and what it did with it."""

    action: str
    method: str
    path: str
    body: bytes

    @property
    def forwarded(self) -> bool:
        """Whether the request reached the upstream server."""
        return self.action in FORWARDING


class FaultProxy:
    """`with FaultProxy(upstream_port) as proxy:` a proxy on 127.0.0.1:`proxy.port`."""

    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int = 0,
        shares: Mapping[str, float] | None = None,
        delay: float = 0.2,
    ) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._scheduled: deque[str] = deque()
        self.configure(seed=seed, shares=shares or {"forward": 1.0}, delay=delay)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- control (from the test's thread) ----------------------------------------------------
    def configure(self, *, seed: int, shares: Mapping[str, float], delay: float = 0.2) -> None:
        """Start a new deterministic sequence of actions."""
        unknown = set(shares) - set(ACTIONS)
        if unknown or not shares or min(shares.values()) < 0 or sum(shares.values()) <= 0:
            raise ValueError(f"shares must weigh some of {ACTIONS}: {dict(shares)}")
        with self._lock:
            self._random = random.Random(seed)
            self._actions = list(shares)
            self._weights = [shares[a] for a in self._actions]
            self.delay = delay

    def schedule(self, *actions: str) -> None:
        """Give the next requests these actions (before any drawn one)."""
        for action in actions:
            if action not in ACTIONS + AMBIGUOUS:
                raise ValueError(f"unknown action {action!r}")
        with self._lock:
            self._scheduled.extend(actions)

    def counts(self) -> Counter[str]:
        """How many requests got each action so far."""
        with self._lock:
            return Counter(c.action for c in self.calls)

    def forwarded(self) -> list[Call]:
        """The requests that reached the upstream server."""
        with self._lock:
            return [c for c in self.calls if c.forwarded]

    def clear(self) -> None:
        """Forget the calls recorded so far."""
        with self._lock:
            self.calls.clear()

    def _next_action(self) -> str:
        with self._lock:
            if self._scheduled:
                return self._scheduled.popleft()
            return self._random.choices(self._actions, self._weights)[0]

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Listen on a free port; return once connections are accepted."""
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # reported to start() or stop()
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            self.stop()
            raise RuntimeError(f"the fault proxy did not start: {failure}")

    def stop(self) -> None:
        """Close every connection and the listener; stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive() and self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)
        thread.join(10)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await self._connection(reader, writer)
            finally:
                handlers.discard(task)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()

    # -- one connection from the relay -------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                head, body = request
                method, path = _request_line(head)
                action = self._next_action()
                self._record(Call(action, method, path, body))
                if action == "reset":
                    _reset(writer)
                    return
                if action == "fail":
                    writer.write(_failure_response())
                    await writer.drain()
                    continue
                if action == "delay":
                    await asyncio.sleep(self.delay)
                answer, keep_alive = await self._forward(head + body)
                if action == "forward_then_reset":
                    _reset(writer)
                    return
                if action == "forward_then_close":
                    return  # the finally closes it cleanly (FIN), with no answer sent
                if action == "forward_then_hang":
                    with contextlib.suppress(ConnectionError):
                        while await reader.read(4096):
                            pass  # until the relay gives up and closes
                    return
                writer.write(answer)
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _forward(self, request: bytes) -> tuple[bytes, bool]:
        """Send one request on a fresh upstream connection; return the answer and whether the
        relay's connection stays open after it."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            writer.write(request)
            await writer.drain()
            return await _read_response(reader)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# -- HTTP/1.1 framing, just enough for the relay's client and soketi ---------------------------
async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None  # the connection ended between requests
    except asyncio.LimitOverrunError as exc:
        raise ConnectionError("header section too long") from exc


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    found: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found


def _request_line(head: bytes) -> tuple[str, str]:
    method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
    return method, rest.rsplit(" ", 1)[0]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    head = await _read_head(reader)
    if head is None:
        return None
    headers = _headers(head)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ConnectionError("chunked request bodies are not supported by the fault proxy")
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return head, body


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    head = await _read_head(reader)
    if head is None:
        raise ConnectionError("the upstream closed without answering")
    headers = _headers(head)
    keep_alive = headers.get("connection", "").lower() != "close"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            body += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = await reader.readuntil(b"\r\n")
                    body += line
                    if line == b"\r\n":
                        break
                break
            body += await reader.readexactly(size + 2)
        return head + bytes(body), keep_alive
    if "content-length" in headers:
        return head + await reader.readexactly(int(headers["content-length"])), keep_alive
    return head + await reader.read(), False  # delimited by the end of the connection


def _failure_response() -> bytes:
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(FAILURE), FAILURE)
    )


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
