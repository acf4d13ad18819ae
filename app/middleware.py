"""ASGI middleware: a body size limit and read deadline enforced before parsing, and a
secret-free access log."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from core.errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX, PayloadTooLarge

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("app.access")


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


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, and bodies not received within
    `read_timeout` seconds with 408, before any route parses them.

    The body is read here, up to the limit, and handed on from memory: a route's own parser can
    then never see (or swallow the error of) an oversized or under-declared body. The deadline
    covers the whole body, not each read: a client trickling a byte at a time cannot hold a
    connection (and its file descriptor) for longer than `read_timeout`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, read_timeout: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._refuse(scope, send)
                return
        chunks: list[bytes] = []
        seen = 0
        try:
            async with asyncio.timeout(self.read_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client left before sending it all
                        return
                    chunk = message.get("body", b"")
                    seen += len(chunk)
                    if seen > self.max_bytes:
                        await self._refuse(scope, send)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._time_out(scope, send)
            return
        buffered: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return buffered.pop() if buffered else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        error = PayloadTooLarge(f"the request body is over {self.max_bytes} bytes")
        body = orjson.dumps(error.problem(instance=scope["path"]))
        headers = [(b"content-type", PROBLEM_CONTENT_TYPE.encode()), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _time_out(self, scope: Scope, send: Send) -> None:
        assert self.read_timeout is not None
        body = orjson.dumps(request_timeout_problem(self.read_timeout, scope["path"]))
        # `connection: close`: the rest of the body may still arrive; it must not be read as the
        # next request.
        headers = [
            (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 408, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def loggable(path: str) -> str:
    """The path as one log line can hold it: a control character a client percent-encoded
    (`%0a`, forging a second line) escaped as `\\n`, and so the backslash that could fake one."""
    if path.isprintable() and "\\" not in path:
        return path
    return path.encode("unicode_escape").decode("ascii")


class AccessLog:
    """One line per request: method, path without the query (it may hold a token), status, time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
            elif message["type"] == "websocket.accept":
                status = 101
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            access_log.info(
                "%s %s %d %.1fms",
                scope.get("method", "WS"),
                loggable(scope["path"]),
                status,
                (time.perf_counter() - start) * 1000,
            )
