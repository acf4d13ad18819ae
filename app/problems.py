"""Every error becomes RFC 9457 problem+json here, in one place."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX, RelayError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastapi import FastAPI, Request

log = logging.getLogger(__name__)


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    """A problem+json response."""
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE
    )


def _http_slug(status: int) -> str:
    return {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
        status, "http-error"
    )


PROBLEM_SCOPE_KEY = "relay.problem"  # the answer's problem slug, for the metrics (app/metrics.py)


def _note(request: Request, slug: str) -> None:
    request.scope[PROBLEM_SCOPE_KEY] = slug


async def relay_error(request: Request, exc: Exception) -> Response:
    """A RelayError as its problem, with its headers (Retry-After, ...)."""
    assert isinstance(exc, RelayError)
    _note(request, exc.slug)
    if exc.status >= 500:
        log.warning("%s %s: %s: %s", request.method, request.url.path, exc.slug, exc.detail)
    return problem_response(exc.status, exc.problem(instance=request.url.path), exc.headers())


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Report where and what, never the input itself: it may hold a secret.
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()
    ][:20]
    detail = "the request does not match the schema"
    item = _batch_item(exc.errors())
    _note(request, "invalid-request")
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + "invalid-request",
        "title": "Invalid request",
        "status": 422,
        "detail": detail if item is None else f"batch item {item}: {detail}",
        "instance": request.url.path,
        "errors": errors,
    }
    if item is not None:
        body["item"] = item
    return problem_response(422, body)


def _batch_item(errors: Sequence[Any]) -> int | None:
    """The first event of a batch the schema errors are about, when they are all in events."""
    items = [
        loc[2]
        for loc in (tuple(e.get("loc", ())) for e in errors)
        if loc[:2] == ("body", "batch") and len(loc) > 2 and isinstance(loc[2], int)
    ]
    return min(items) if items and len(items) == len(errors) else None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    _note(request, _http_slug(exc.status_code))
    body = {
        "type": PROBLEM_TYPE_PREFIX + _http_slug(exc.status_code),
        "title": str(exc.detail),
        "status": exc.status_code,
        "detail": str(exc.detail),
        "instance": request.url.path,
    }
    return problem_response(exc.status_code, body, dict(exc.headers or {}))


async def unexpected(request: Request, exc: Exception) -> Response:
    """Any other exception: logged with its traceback, answered 500 without its text."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    _note(request, "internal")
    body = {
        "type": PROBLEM_TYPE_PREFIX + "internal",
        "title": "Internal error",
        "status": 500,
        "detail": "the relay failed; the error is logged",
        "instance": request.url.path,
    }
    return problem_response(500, body)


def install(app: FastAPI) -> None:
    """Register the handlers on an app."""
    app.add_exception_handler(RelayError, relay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, unexpected)
