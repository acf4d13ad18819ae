"""Browser origins: refuse the auth endpoints and sockets to pages not in RELAY_ALLOWED_ORIGINS.

CORS alone only stops a page from reading an answer; a cross-site page could still make the
browser send a credentialed request, and WebSockets ignore CORS entirely. So a request that carries
an Origin outside the list is refused (by app.middleware.Front) before any route runs. Requests
without Origin (servers, curl) pass: browsers always send it on cross-origin requests and
WebSocket handshakes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from core.errors import PROBLEM_CONTENT_TYPE, OriginNotAllowed
from core.origins import AllowedOrigins

if TYPE_CHECKING:
    from starlette.types import Scope, Send

GUARDED_HTTP_PREFIXES = ("/auth/", "/v1/stream")


class OriginGuard(AllowedOrigins):
    """The origin allowlist (core/origins.py) of the auth endpoints, SSE and WebSockets."""

    def __init__(self, *, origins: tuple[str, ...]) -> None:
        super().__init__(origins)

    @staticmethod
    def guards(scope: Scope) -> bool:
        """Whether this request is one the allowlist applies to."""
        path: str = scope["path"]
        return scope["type"] == "websocket" or path.startswith(GUARDED_HTTP_PREFIXES)

    @staticmethod
    def refusal(path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The HTTP refusal: status, headers, body (a 403 problem)."""
        error = OriginNotAllowed("this origin is not in RELAY_ALLOWED_ORIGINS")
        body = orjson.dumps(error.problem(instance=path))
        return error.status, [(b"content-type", PROBLEM_CONTENT_TYPE.encode())], body

    @staticmethod
    async def refuse_socket(send: Send) -> None:
        """Close a WebSocket handshake before accepting it: the server answers it with 403."""
        await send({"type": "websocket.close", "code": 1008})
