"""Routes served below FastAPI's routing: the pusher-js auth endpoints, the relay's busiest.

FastAPI registers and documents them as usual (`Direct.post` is `router.post`); the relay's
middleware layer (app.middleware.Front) serves them itself, giving the endpoint its Request with
the body already read and turning its errors into the answers the app's exception handlers give
(app.problems). FastAPI's middleware, routing and request handling were most of an auth
request's cost: bench/README.md, "Auth".
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app import problems
from core.errors import RelayError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from fastapi import APIRouter
    from starlette.types import Receive, Scope

Endpoint = Callable[[Request], Awaitable[Response]]
E = TypeVar("E", bound=Endpoint)


def json_answer(answer: Mapping[str, Any]) -> Response:
    """A direct endpoint's JSON answer, serialized once here: the route's `response_model`
    documents it, and FastAPI's own validation and encoding would only repeat the work."""
    return Response(orjson.dumps(answer), media_type="application/json")


class Direct:
    """A router's routes that Front serves itself. Each takes the Request alone and returns a
    complete Response."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.endpoints: dict[tuple[str, str], Endpoint] = {}

    def post(self, path: str, **options: Any) -> Callable[[E], E]:
        """`@router.post(path, **options)`, served by Front."""

        def register(endpoint: E) -> E:
            if len(inspect.signature(endpoint).parameters) != 1:
                raise TypeError(f"{path}: a direct endpoint takes the Request alone")
            self.router.post(path, **options)(endpoint)
            self.endpoints[("POST", self.router.prefix + path)] = endpoint
            return endpoint

        return register


async def serve(endpoint: Endpoint, scope: Scope, receive: Receive, body: bytes) -> Response:
    """The endpoint's answer, or its error as the app's exception handlers answer it."""
    request = _ReadRequest(scope, receive, body)
    try:
        return await endpoint(request)
    except RelayError as exc:
        return await problems.relay_error(request, exc)
    except Exception as exc:  # the app's last-resort handler: logged, answered 500
        return await problems.unexpected(request, exc)


class _ReadRequest(Request):
    """A request whose body Front has read already."""

    def __init__(self, scope: Scope, receive: Receive, body: bytes) -> None:
        super().__init__(scope, receive)
        self._read = body

    async def body(self) -> bytes:
        """The body, as read."""
        return self._read

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The body, as read, in one piece."""
        yield self._read
