"""Reading small request bodies that may be JSON or form-encoded (pusher-js sends forms)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import orjson

from core.errors import BadRequest

if TYPE_CHECKING:
    from starlette.requests import Request

MAX_FIELDS = 32


async def read_fields(request: Request) -> dict[str, str]:
    """The body's top-level string fields, from JSON or application/x-www-form-urlencoded."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("the body is not valid JSON") from exc
        if not isinstance(parsed, dict):
            raise BadRequest("the body must be a JSON object")
        fields = {k: v for k, v in parsed.items() if isinstance(v, str)}
    elif content_type in ("application/x-www-form-urlencoded", ""):
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest("the body is not a valid form") from exc
        fields = dict(pairs)
    else:
        raise BadRequest("send application/json or application/x-www-form-urlencoded")
    if len(fields) > MAX_FIELDS:
        raise BadRequest(f"at most {MAX_FIELDS} fields")
    return fields
