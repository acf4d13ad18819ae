"""The API Gateway management API (POST and DELETE /@connections/{id}) over kept-alive sockets.

A fan-out is hundreds of tiny POSTs to one host. A general client costs 1 to 4 ms of CPU per
request at that concurrency (httpx's pool, measured on the benchmark machine), which alone would
double the time of a 1,000-connection fan-out; a pool of plain HTTP/1.1 connections costs about
0.1 ms. Only what the management API answers is understood: a status, a few headers, a short body.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import orjson
from msgspec import Struct

if TYPE_CHECKING:
    from providers.outbound.sigv4 import Signer

# AWS names the error GoneException; serverless-offline answers a bare 410, which botocore (and
# so this module) reports as the code "410".
GONE_CODES = frozenset({"GoneException", "410"})
RETRYABLE_CODES = frozenset({"LimitExceededException", "ThrottlingException", "NetworkError"})
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024


class Answer(Struct, frozen=True):
    """What the management API said: the status, and AWS's error code when it is an error."""

    status: int
    code: str | None = None

    @property
    def ok(self) -> bool:
        """The connection got the data (or was closed)."""
        return 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """The connection no longer exists (decided on the error code, not the status)."""
        return self.code in GONE_CODES

    @property
    def retryable(self) -> bool:
        """Trying again later may succeed: throttling, 5xx, or a connection that failed."""
        return not self.ok and (self.code in RETRYABLE_CODES or self.status >= 500)


NETWORK_ERROR = Answer(0, "NetworkError")  # nothing was sent: safe to retry
NO_ANSWER = Answer(0, "Timeout")  # sent, unanswered: it may have arrived, so never retried


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False

    async def exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes, bool]:
        """Send one request; (status, headers, body, keep-alive)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD_BYTES:
            raise ValueError("response head too large")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        body = await self._body(headers)
        keep = headers.get("connection", "").lower() != "close"
        return status, headers, body, keep

    async def _body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk[:-2])
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY_BYTES:
            raise ValueError("response body too large")
        return await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


def error_code(status: int, headers: dict[str, str], body: bytes) -> str | None:
    """AWS's error code: the x-amzn-ErrorType header, else `__type`/`code` in the body, else
    the status (as botocore does); None for a success."""
    if 200 <= status < 300:
        return None
    named = headers.get("x-amzn-errortype", "").split(":")[0].strip()
    if named:
        return named
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
        parsed = orjson.loads(body) if body else None
        if isinstance(parsed, dict):
            for key in ("__type", "code", "Code"):
                value = parsed.get(key)
                if isinstance(value, str) and value:
                    return value.rsplit("#", 1)[-1]
    return str(status)


class ManagementApi:
    """POST and DELETE on /@connections/{id}, signed, over at most `max_connections` sockets."""

    def __init__(
        self,
        endpoint: str,
        signer: Signer | None,
        *,
        timeout: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("the management endpoint must be an http(s) URL")
        self.endpoint = endpoint.rstrip("/")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._authority = url.netloc
        self._base_path = url.path.rstrip("/")
        self._ssl = ssl.create_default_context() if url.scheme == "https" else None
        self._signer = signer
        self._timeout = timeout
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.requests = 0  # sent so far: the benchmark and the tests read it

    async def post(self, connection_id: str, data: bytes) -> Answer:
        """Send one message to one connection."""
        return await self._call("POST", connection_id, data)

    async def delete(self, connection_id: str) -> Answer:
        """Close a connection (API Gateway then runs $disconnect)."""
        return await self._call("DELETE", connection_id, b"")

    def _request(self, method: str, connection_id: str, body: bytes) -> bytes:
        path = f"{self._base_path}/@connections/{quote(connection_id, safe='')}"
        headers = {"host": self._authority, "content-length": str(len(body))}
        if self._signer is not None:
            headers.update(self._signer.headers(method, self._authority, path, body))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body

    async def _call(self, method: str, connection_id: str, body: bytes) -> Answer:
        request = self._request(method, connection_id, body)
        self._bind()
        async with self._slots:
            # A kept-alive socket the server closed while idle fails before any answer: that
            # request was not processed, so it is sent once more on a fresh socket.
            for fresh in (False, True):
                try:
                    connection = await self._acquire(fresh=fresh)
                except (OSError, TimeoutError):
                    return NETWORK_ERROR
                reused = connection.used
                connection.used = True
                try:
                    async with asyncio.timeout(self._timeout):
                        status, headers, reply, keep = await connection.exchange(request)
                except asyncio.IncompleteReadError as exc:
                    connection.close()
                    if reused and not exc.partial and not fresh:
                        continue
                    return NO_ANSWER
                except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError):
                    connection.close()
                    return NO_ANSWER
                self.requests += 1
                if keep:
                    self._idle.append(connection)
                else:
                    connection.close()
                return Answer(status, error_code(status, headers, reply))
        return NO_ANSWER  # pragma: no cover - the loop always returns

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Sockets and semaphores belong to the loop that made them (one loop per Lambda
            # container, but a new one per test): another loop's cannot be used from this one.
            self._idle.clear()
            self._slots = asyncio.Semaphore(self._max_connections)
            self._loop = loop

    async def _acquire(self, *, fresh: bool) -> _Connection:
        if self._idle and not fresh:
            return self._idle.pop()
        async with asyncio.timeout(self._timeout):
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Small requests and answers: never wait for Nagle's algorithm.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        """Close the idle sockets."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.writer.wait_closed()
