"""Pusher's HMAC-SHA256 signatures: channel auth, user auth, HTTP API requests and webhooks.

Shared by every provider that speaks the Pusher protocol (local, pusher, apigateway). Formats are
Pusher's published ones; all comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING

from app.errors import InvalidSignature

if TYPE_CHECKING:
    from collections.abc import Mapping

AUTH_VERSION = "1.0"
# Pusher refuses HTTP API requests whose auth_timestamp is more than 600 s off.
MAX_CLOCK_SKEW_SECONDS = 600


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


def verify_request(
    key: str,
    secret: str,
    method: str,
    path: str,
    params: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> None:
    """Raise InvalidSignature unless the HTTP API request is signed by this app, recently."""
    signature = params.get("auth_signature")
    if not signature:
        raise InvalidSignature("auth_signature is missing")
    if not _same(params.get("auth_key", ""), key):
        raise InvalidSignature("auth_key is not this app's key")
    if params.get("auth_version") != AUTH_VERSION:
        raise InvalidSignature("auth_version must be 1.0")
    try:
        stamp = int(params.get("auth_timestamp", ""))
    except ValueError:
        raise InvalidSignature("auth_timestamp must be an integer") from None
    current = time.time() if now is None else now
    if abs(current - stamp) > MAX_CLOCK_SKEW_SECONDS:
        raise InvalidSignature(f"auth_timestamp is more than {MAX_CLOCK_SKEW_SECONDS} s off")
    if body or "body_md5" in params:
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        if not _same(params.get("body_md5", ""), md5):
            raise InvalidSignature("body_md5 does not match the body")
    unsigned = {k: v for k, v in params.items() if k != "auth_signature"}
    if not _same(signature, request_signature(secret, method, path, unsigned)):
        raise InvalidSignature("auth_signature does not match")


def webhook_signature(secret: str, body: bytes) -> str:
    """X-Pusher-Signature: hex HMAC-SHA256 of the raw webhook body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
