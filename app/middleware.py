"""The relay's one ASGI middleware layer, `Front`, in front of FastAPI.

Each request passes, in this order, what used to be four wrappers around the app (and the
access log's, CORS's and the exception handlers' wrapped `send`s): CORS preflights answered;
the origin allowlist (app.origins, 403); the body read up to RELAY_MAX_BODY_BYTES (413) within
RELAY_REQUEST_READ_TIMEOUT_SECONDS (408) and handed on from memory; CORS headers added to every
answer (app.cors); one access-log line. The routes registered through app.direct (the
pusher-js auth endpoints, the relay's busiest) are served from here, below FastAPI's routing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from app.cors import Cors
from app.deadlines import Deadlines
from app.direct import serve
from app.origins import OriginGuard
from app.problems import PROBLEM_SCOPE_KEY
from core.errors import (
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPE_PREFIX,
    OriginNotAllowed,
    PayloadTooLarge,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from app.direct import Endpoint
    from core.settings import Settings

access_log = logging.getLogger("app.access")

_PROBLEM = PROBLEM_CONTENT_TYPE.encode()


def request_timeout_problem(seconds: float, instance: str | None = None) -> dict[str, Any]:
    """The 408 problem for a request not fully received within `seconds`."""
    detail = f"the request was not received within {seconds:g} seconds"
    return _problem(408, "request-timeout", "Request timeout", detail, instance)


def over_capacity_problem(detail: str, instance: str | None = None) -> dict[str, Any]:
    """The 503 problem for a connection over the relay's connection cap."""
    return _problem(503, "over-capacity", "Over capacity", detail, instance)


def _problem(
    status: int, slug: str, title: str, detail: str, instance: str | None
) -> dict[str, Any]:
    # Also written below the app (in uvicorn's protocol), where no RelayError handler runs.
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    return body


def loggable(path: str) -> str:
    """The path as one log line can hold it: a control character a client percent-encoded
    (`%0a`, forging a second line) escaped as `\\n`, and so the backslash that could fake one."""
    if path.isprintable() and "\\" not in path:
        return path
    return path.encode("unicode_escape").decode("ascii")


class _Answer(NamedTuple):
    """A response this layer writes itself."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Front:
    """Origins, body limits, CORS, the access log and the direct routes, in one layer."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        host: ASGIApp,
        direct: Mapping[tuple[str, str], Endpoint],
        measure: Callable[[str, int, float, str | None], None] | None = None,
    ) -> None:
        self.app = app
        # app/metrics.py: each answer's path, status, seconds and problem slug (None: no problem)
        self.measure = measure
        self.host = host  # the application the direct routes' requests belong to
        self.direct = dict(direct)
        self.max_bytes = settings.max_body_bytes
        self.read_timeout = settings.request_read_timeout_seconds
        self.deadlines = Deadlines(self.read_timeout)
        self.guard = OriginGuard(origins=settings.origins)
        self.cors = Cors(settings.origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 0
        origin = preflight = wanted = private = None
        oversize = False
        for name, value in scope["headers"]:  # one pass for every header this layer reads
            if name == b"content-length":
                oversize = oversize or not value.isdigit() or int(value) > self.max_bytes
            elif name == b"origin":
                origin = value.decode("latin-1") if origin is None else origin
            elif name.startswith(b"access-control-request-"):
                if name == b"access-control-request-method" and preflight is None:
                    preflight = value.decode("latin-1")
                elif name == b"access-control-request-headers" and wanted is None:
                    wanted = value.decode("latin-1")
                elif name == b"access-control-request-private-network" and private is None:
                    private = value.decode("latin-1")

        async def answer(code: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> None:
            nonlocal status
            status = code
            headers = self.cors.answer(origin, headers)
            await send({"type": "http.response.start", "status": code, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        try:
            if origin is not None and preflight is not None and scope["method"] == "OPTIONS":
                response = self.cors.preflight(origin, preflight, wanted, private)
                status = response.status_code
                await response(scope, receive, send)
            elif self.guard.guards(scope) and not self.guard.allowed(origin):
                scope[PROBLEM_SCOPE_KEY] = OriginNotAllowed.slug
                await answer(*_sized(*self.guard.refusal(scope["path"])))
            elif oversize:
                scope[PROBLEM_SCOPE_KEY] = PayloadTooLarge.slug
                await answer(*self._too_large(scope["path"]))
            else:
                body = await self._body(receive, scope["path"])
                if body is None:  # the client left before sending it all
                    return
                if isinstance(body, _Answer):
                    scope[PROBLEM_SCOPE_KEY] = (
                        PayloadTooLarge.slug if body.status == 413 else "request-timeout"
                    )
                    await answer(*body)
                    return
                endpoint = self.direct.get((scope["method"], scope["path"]))
                if endpoint is not None:
                    scope["app"] = self.host
                    response = await serve(endpoint, scope, receive, body)
                    content = response.body
                    if not isinstance(content, bytes):
                        content = bytes(content)
                    await answer(response.status_code, response.raw_headers, content)
                    return

                async def sending(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        message["headers"] = self.cors.answer(origin, message.get("headers", ()))
                    await send(message)

                buffered: list[Message] = [{"type": "http.request", "body": body}]

                async def replay() -> Message:
                    return buffered.pop() if buffered else await receive()

                await self.app(scope, replay, sending)
        finally:
            if self.measure is not None:
                seconds = time.perf_counter() - start
                self.measure(scope["path"], status, seconds, scope.get(PROBLEM_SCOPE_KEY))
            if access_log.isEnabledFor(logging.INFO):
                _log(scope, status, start)

    async def _body(self, receive: Receive, path: str) -> bytes | _Answer | None:
        """The whole body; or the answer refusing it; None when the client left mid-body.

        The deadline covers the whole body, not each read: a client trickling a byte at a time
        cannot hold a connection (and its file descriptor) for longer than `read_timeout`."""
        chunks: list[bytes] = []
        seen = 0
        deadline = self.deadlines.start()
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return None
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > self.max_bytes:
                    return self._too_large(path)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except asyncio.CancelledError:
            if not deadline.expired():
                raise
            # `connection: close`: the rest of the body may still arrive; it must not be read
            # as the next request.
            body = orjson.dumps(request_timeout_problem(self.read_timeout, path))
            return _sized(408, [(b"content-type", _PROBLEM), (b"connection", b"close")], body)
        finally:
            deadline.done()

    def _too_large(self, path: str) -> _Answer:
        error = PayloadTooLarge(f"the request body is over {self.max_bytes} bytes")
        body = orjson.dumps(error.problem(instance=path))
        return _sized(413, [(b"content-type", _PROBLEM), (b"connection", b"close")], body)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 0
        origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "websocket.http.response.start":
                status = message["status"]
            elif message["type"] == "websocket.accept":
                status = 101
            await send(message)

        try:
            if not self.guard.allowed(origin):
                await self.guard.refuse_socket(send)
                return
            await self.app(scope, receive, sending)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                _log(scope, status, start)


def _sized(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> _Answer:
    return _Answer(status, [*headers, (b"content-length", b"%d" % len(body))], body)


def log_socket(path: str, status: int, start: float) -> None:
    """The access log's line of a socket the lean server (app/socket_server.py) served."""
    if access_log.isEnabledFor(logging.INFO):
        _log({"path": path}, status, start)


def _log(scope: Scope, status: int, start: float) -> None:
    """One line per request: method, path without the query (it may hold a token), status, time."""
    access_log.info(
        "%s %s %d %.1fms",
        scope.get("method", "WS"),
        loggable(scope["path"]),
        status,
        (time.perf_counter() - start) * 1000,
    )
