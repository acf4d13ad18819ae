"""Ably TokenRequests: the signed, single-use request a client trades for a token at Ably.

The relay never asks Ably for a token itself. It signs a TokenRequest with the API key's secret
and hands it to ably-js (`authUrl`), which posts it unchanged to
`POST /keys/{keyName}/requestToken`. Ably recomputes the MAC, so every field below is part of the
proof and none may change in transit.

The MAC (Ably's TokenRequest spec, RSA9; ably-python `TokenRequest.sign_request`) is
base64(HMAC-SHA256(secret, keyName\\n ttl\\n capability\\n clientId\\n timestamp\\n nonce\\n)),
an absent value signed as the empty string.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from msgspec import Struct

NONCE_BYTES = 16  # Ably asks for at least 16 characters; 16 random bytes give 32 hex characters


class TokenRequest(Struct, frozen=True):
    """A signed TokenRequest, as ably-js expects it from an `authUrl`."""

    key_name: str
    ttl_ms: int
    capability: str  # the capability JSON exactly as signed
    client_id: str | None
    timestamp_ms: int
    nonce: str
    mac: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON body: Ably's camelCase names, with no `clientId` for an anonymous client."""
        body: dict[str, Any] = {
            "keyName": self.key_name,
            "ttl": self.ttl_ms,
            "capability": self.capability,
            "timestamp": self.timestamp_ms,
            "nonce": self.nonce,
            "mac": self.mac,
        }
        if self.client_id is not None:
            body["clientId"] = self.client_id
        return body


def token_mac(
    secret: str,
    *,
    key_name: str,
    ttl_ms: int,
    capability: str,
    client_id: str | None,
    timestamp_ms: int,
    nonce: str,
) -> str:
    """The base64 HMAC-SHA256 that proves the key holder wrote these exact fields."""
    fields = (key_name, str(ttl_ms), capability, client_id or "", str(timestamp_ms), nonce)
    text = "".join(f"{field}\n" for field in fields)
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_token_request(
    key_name: str,
    secret: str,
    *,
    ttl_ms: int,
    capability: str,
    client_id: str | None,
    timestamp_ms: int,
    nonce: str,
) -> TokenRequest:
    """A TokenRequest whose MAC covers every field."""
    mac = token_mac(
        secret,
        key_name=key_name,
        ttl_ms=ttl_ms,
        capability=capability,
        client_id=client_id,
        timestamp_ms=timestamp_ms,
        nonce=nonce,
    )
    return TokenRequest(key_name, ttl_ms, capability, client_id, timestamp_ms, nonce, mac)


def new_nonce() -> str:
    """A fresh nonce: Ably refuses a TokenRequest whose nonce it has already seen."""
    return secrets.token_hex(NONCE_BYTES)
