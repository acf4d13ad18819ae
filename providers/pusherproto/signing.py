"""Pusher's HMAC-SHA256 signatures: channel auth, user auth, HTTP API requests and webhooks.

Shared by every provider that speaks the Pusher protocol (local, pusher, apigateway). Formats are
Pusher's published ones; all comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from core.errors import InvalidSignature

if TYPE_CHECKING:
    from collections.abc import Iterable

AUTH_VERSION = "1.0"
# Pusher refuses HTTP API requests whose auth_timestamp is more than 600 s off.
MAX_CLOCK_SKEW_SECONDS = 600
# A signed Pusher request carries about six parameters; past this many the query is refused.
MAX_QUERY_PARAMS = 64


def hmac_hex(secret: str, message: str) -> str:
    """Hex HMAC-SHA256 of a UTF-8 message."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def channel_auth(
    key: str, secret: str, *, socket_id: str, channel: str, channel_data: str | None = None
) -> str:
    """The `auth` value for a private or presence subscription: `key:signature`."""
    message = (
        f"{socket_id}:{channel}"
        if channel_data is None
        else (f"{socket_id}:{channel}:{channel_data}")
    )
    return f"{key}:{hmac_hex(secret, message)}"


def user_auth(key: str, secret: str, *, socket_id: str, user_data: str) -> str:
    """The `auth` value for pusher:signin: `key:signature` over `socket_id::user::user_data`."""
    return f"{key}:{hmac_hex(secret, f'{socket_id}::user::{user_data}')}"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def verify_channel_auth(
    key: str,
    secret: str,
    auth: object,
    *,
    socket_id: str,
    channel: str,
    channel_data: str | None = None,
) -> bool:
    """True when `auth` is the signature this relay would give for the subscription."""
    if not isinstance(auth, str):
        return False
    expected = channel_auth(
        key, secret, socket_id=socket_id, channel=channel, channel_data=channel_data
    )
    return _same(auth, expected)


def verify_user_auth(
    key: str, secret: str, auth: object, *, socket_id: str, user_data: str
) -> bool:
    """True when `auth` signs this user_data for this socket."""
    if not isinstance(auth, str):
        return False
    return _same(auth, user_auth(key, secret, socket_id=socket_id, user_data=user_data))


def _query_string(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params))


def request_signature(secret: str, method: str, path: str, params: Mapping[str, str]) -> str:
    """The auth_signature of an HTTP API request (params exclude auth_signature)."""
    lowered = {k.lower(): v for k, v in params.items()}
    return hmac_hex(secret, f"{method.upper()}\n{path}\n{_query_string(lowered)}")


def sign_request(
    key: str,
    secret: str,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    params: Mapping[str, str] | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The query parameters that sign an HTTP API request, signature included."""
    signed = dict(params or {})
    signed.update(
        auth_key=key,
        auth_timestamp=str(int(time.time()) if timestamp is None else timestamp),
        auth_version=AUTH_VERSION,
    )
    if body:
        signed["body_md5"] = hashlib.md5(body, usedforsecurity=False).hexdigest()
    signed["auth_signature"] = request_signature(secret, method, path, signed)
    return signed


def query_pairs(query: str | bytes) -> list[tuple[str, str]]:
    """The (name, value) pairs of a raw query string, percent-decoded once, in order."""
    raw = query.decode("latin-1") if isinstance(query, bytes) else query
    try:
        return parse_qsl(
            raw,
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_QUERY_PARAMS,
        )
    except UnicodeDecodeError:
        raise InvalidSignature("the query string is not valid UTF-8") from None
    except ValueError:
        raise InvalidSignature(f"more than {MAX_QUERY_PARAMS} query parameters") from None


def normalize_query(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The one form that is signed and checked: lower-case names, each given exactly once.

    A name that repeats, exactly or in another case, is refused rather than resolved: "last one
    wins" let a replay sign one value while the checks read another. Names holding `=` or `&`
    and values holding `&` are refused too, so that the string to sign (`name=value` pairs
    joined by `&`) has one reading only."""
    found: dict[str, str] = {}
    for name, value in pairs:
        lowered = name.lower()
        if lowered in found:
            raise InvalidSignature(f"query parameter {lowered[:40]!r} is given more than once")
        if "=" in lowered or "&" in lowered or "&" in value:
            raise InvalidSignature("a query parameter holds a reserved character (= or &)")
        found[lowered] = value
    return found


def verify_request(
    key: str,
    secret: str,
    method: str,
    path: str,
    pairs: Iterable[tuple[str, str]],
    body: bytes,
    *,
    now: float | None = None,
) -> None:
    """Raise InvalidSignature unless the HTTP API request is signed by this app, recently.

    `pairs` are the query's raw (name, value) pairs, duplicates included (see query_pairs):
    every check below reads the one normalized map that the signature covers."""
    if isinstance(pairs, Mapping | str | bytes):
        # A mapping has already resolved duplicates one way or another: refuse to guess.
        raise TypeError("verify_request takes the query's (name, value) pairs, not a mapping")
    params = normalize_query(pairs)
    signature = params.pop("auth_signature", "")
    if not signature:
        raise InvalidSignature("auth_signature is missing")
    if not _same(params.get("auth_key", ""), key):
        raise InvalidSignature("auth_key is not this app's key")
    if params.get("auth_version") != AUTH_VERSION:
        raise InvalidSignature("auth_version must be 1.0")
    stamp_text = params.get("auth_timestamp", "")
    if not stamp_text.isascii() or not stamp_text.isdigit():
        raise InvalidSignature("auth_timestamp must be an integer")
    current = time.time() if now is None else now
    if abs(current - int(stamp_text)) > MAX_CLOCK_SKEW_SECONDS:
        raise InvalidSignature(f"auth_timestamp is more than {MAX_CLOCK_SKEW_SECONDS} s off")
    if body and "body_md5" not in params:
        raise InvalidSignature("body_md5 is missing: a request with a body must sign it")
    if "body_md5" in params:
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        if not _same(params["body_md5"], md5):
            raise InvalidSignature("body_md5 does not match the body")
    if not _same(signature, request_signature(secret, method, path, params)):
        raise InvalidSignature("auth_signature does not match")


def webhook_signature(secret: str, body: bytes) -> str:
    """X-Pusher-Signature: hex HMAC-SHA256 of the raw webhook body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
