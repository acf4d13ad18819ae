"""Development tokens: HS256 JWTs signed with the relay's own secret, for local testing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jwt

from core.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.settings import Settings

MAX_SUBJECT_CHARS = 200


def mint_dev_token(
    settings: Settings,
    *,
    user_id: str,
    name: str | None = None,
    ttl: int = 3600,
    now: float | None = None,
    watchlist: Sequence[str] = (),
) -> str:
    """An HS256 token for `user_id` that this relay's Authenticator accepts."""
    if settings.jwt_secret is None:
        raise ConfigurationError(
            "RELAY_JWT_SECRET: required to mint tokens (a relay that verifies only through "
            "RELAY_JWKS_URL cannot mint them)"
        )
    if not 0 < len(user_id) <= MAX_SUBJECT_CHARS:
        raise ValueError(f"user_id must be 1 to {MAX_SUBJECT_CHARS} characters")
    # A token the relay would refuse for its lifetime is useless, so refuse to mint it.
    if not 0 < ttl <= settings.jwt_max_ttl_seconds:
        raise ValueError(f"ttl must be between 1 and {settings.jwt_max_ttl_seconds} seconds")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": user_id, "iat": issued, "nbf": issued, "exp": issued + ttl}
    if name is not None:
        claims["name"] = name
    if watchlist:
        claims["watchlist"] = list(watchlist)  # pusher:signin's watchlist (core/authorizing.py)
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
