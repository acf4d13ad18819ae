"""Reading small request bodies that may be JSON or form-encoded (pusher-js sends forms)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import orjson

from core.errors import BadRequest

if TYPE_CHECKING:
    from starlette.requests import Request

MAX_FIELDS = 32


def chosen_provider(request: Request, fields: dict[str, str]) -> str | None:
    """The provider a client asks to sign for it (`provider`, in the query or the body), where
    the relay delivers through two (RELAY_SECONDARY_PROVIDER); None: the relay's choice. Given
    twice, or differently in the query and the body, it is refused."""
    named = request.query_params.getlist("provider") if request.url.query else []
    if len(named) > 1:
        raise BadRequest("name the provider once, in the query or in the body")
    if "provider" in fields:
        named.append(fields["provider"])
    if len(set(named)) > 1:
        raise BadRequest("the query and the body name different providers")
    return named[0] if named else None


async def read_fields(request: Request) -> dict[str, str]:
    """The body's top-level string fields, from JSON or application/x-www-form-urlencoded; a
    form that names a field twice is refused."""
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
        if len(fields) != len(pairs):  # which one counts would be a guess: refused
            raise BadRequest("a field is given twice")
    else:
        raise BadRequest("send application/json or application/x-www-form-urlencoded")
    if len(fields) > MAX_FIELDS:
        raise BadRequest(f"at most {MAX_FIELDS} fields")
    return fields
