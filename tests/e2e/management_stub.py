"""A local stand-in for API Gateway's management API: POST/DELETE /@connections/{id}.

It records what it receives, answers 410 for connections it is told are gone (as AWS does, with
`x-amzn-ErrorType: GoneException`, or bare as serverless-offline does), can fail a connection's
first posts with a chosen status, and can wait a fixed latency before each answer. It runs in the
caller's event loop (unit tests) or as its own process (`python -m tests.e2e.management_stub PORT
LATENCY_MS`, the benchmark: it then keeps the load off the measured process's CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

GONE_AWS = b"HTTP/1.1 410 Gone\r\nx-amzn-ErrorType: GoneException\r\nContent-Length: 2\r\n\r\n{}"
GONE_OFFLINE = b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


def _status(code: int, error: str) -> bytes:
    body = b'{"message":"stub"}'
    head = f"HTTP/1.1 {code} Stub\r\nx-amzn-ErrorType: {error}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


@dataclass
class ManagementStub:
    """The stub server; `posts` holds (connection id, body) in arrival order."""

    latency: float = 0.0
    aws_errors: bool = True
    gone: set[str] = field(default_factory=set)
    failures: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    posts: list[tuple[str, bytes]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def endpoint(self) -> str:
        """The base URL to give the provider (as APIGW_ENDPOINT)."""
        return f"http://127.0.0.1:{self.port}/stub"

    def bodies(self, connection_id: str) -> list[bytes]:
        """What one connection received."""
        return [body for cid, body in self.posts if cid == connection_id]

    async def start(self, port: int = 0) -> ManagementStub:
        """Listen on 127.0.0.1."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and close every client socket."""
        if self._server is not None:
            self._server.close()
            await close_all(self._writers)
            await self._server.wait_closed()

    async def __aenter__(self) -> ManagementStub:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target = head.split(b" ", 2)[:2]
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(self._answer(method.decode(), target.decode(), body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _answer(self, method: str, target: str, body: bytes) -> bytes:
        connection_id = unquote(target.rsplit("/@connections/", 1)[-1])
        queued = self.failures.get(connection_id)
        if queued:
            return _status(*queued.pop(0))
        if connection_id in self.gone:
            return GONE_AWS if self.aws_errors else GONE_OFFLINE
        if method == "DELETE":
            self.deletes.append(connection_id)
            self.gone.add(connection_id)
            return NO_CONTENT
        self.posts.append((connection_id, body))
        return OK


async def close_all(writers: set[asyncio.StreamWriter]) -> None:
    """Close server-side sockets still open (Python 3.11 servers do not close them)."""
    pending = list(writers)
    writers.clear()
    for writer in pending:
        writer.close()
    for writer in pending:
        with contextlib.suppress(Exception):
            await writer.wait_closed()


class RawServer:
    """A one-off TCP server for protocol edge cases; its sockets are closed with it."""

    def __init__(
        self,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> None:
        self._handler = handler
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await close_all(self._writers)
        await self._server.wait_closed()


async def _main(port: int, latency_ms: float) -> None:
    stub = await ManagementStub(latency=latency_ms / 1000).start(port)
    print(f"listening {stub.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await stub.stop()


if __name__ == "__main__":
    run = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop  # a faster loop keeps the stub's own overhead out of the measured latency

        run = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        run(_main(int(sys.argv[1]), float(sys.argv[2])))


class StubThread:
    """A ManagementStub on its own event loop in a thread, for synchronous callers (the Lambda
    handlers run their own loop)."""

    def __init__(self, **options: object) -> None:
        self.stub = ManagementStub(**options)  # type: ignore[arg-type]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ManagementStub:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.stub.start(), self._loop).result(5)
        return self.stub

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.stub.stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
