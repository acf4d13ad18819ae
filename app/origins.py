"""Browser origins: refuse the auth endpoints and sockets to pages not in RELAY_ALLOWED_ORIGINS.

CORS alone only stops a page from reading an answer; a cross-site page could still make the
browser send a credentialed request, and WebSockets ignore CORS entirely. So a request that carries
an Origin outside the list is refused here before any route runs. Requests without Origin (servers,
curl) pass: browsers always send it on cross-origin requests and WebSocket handshakes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from core.errors import PROBLEM_CONTENT_TYPE, OriginNotAllowed

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

GUARDED_HTTP_PREFIXES = ("/auth/", "/v1/stream")


class OriginGuard:
    """ASGI middleware enforcing the origin allowlist on auth, SSE and WebSocket requests."""

    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...]) -> None:
        self.app = app
        self.any = "*" in origins
        self.origins = frozenset(origins)

    def allowed(self, origin: str | None) -> bool:
        """Whether a request with this Origin header may proceed."""
        return origin is None or self.any or origin.rstrip("/") in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "websocket" or (
            scope["type"] == "http" and scope["path"].startswith(GUARDED_HTTP_PREFIXES)
        )
        if guarded:
            origin = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None
            )
            if not self.allowed(origin):
                await self._refuse(scope, send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        error = OriginNotAllowed("this origin is not in RELAY_ALLOWED_ORIGINS")
        body = orjson.dumps(error.problem(instance=scope["path"]))
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [(b"content-type", PROBLEM_CONTENT_TYPE.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
