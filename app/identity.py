"""The identity gate: turns the credential a request presents into a Principal.

A request may present nothing (anonymous), a JWT (an end user) or an API key (a backend). A
credential that is presented and fails is refused with InvalidToken, never downgraded to
anonymous, so a typo in a backend's key cannot quietly turn it into an anonymous caller.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from app.errors import InvalidToken
from app.jwks import JwksCache, key_algorithm
from app.principal import ANONYMOUS, Principal, PrincipalKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from app.settings import Settings

log = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 8 * 1024
MAX_SUBJECT_CHARS = 200
# Three base64url segments; the signature may be empty so that an `alg: none` token is still
# recognised as a JWT and refused as such rather than as a wrong API key.
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})

# PyJWT exception -> the few words a client is told (never the token, never PyJWT's text).
_JWT_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidAlgorithmError, "unsupported algorithm"),
    (InvalidSubjectError, "invalid sub claim"),
    (InvalidJTIError, "invalid jti claim"),
    (jwt.DecodeError, "malformed token"),
    (jwt.InvalidKeyError, "bad signature"),
)


def _digest(value: str) -> bytes:
    # surrogatepass keeps the encoding one-to-one, so two different keys never share a digest.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _timestamp(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim, or None when absent; NaN/Infinity would defeat every comparison."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken(f"invalid {name} claim")
    return float(value)


class Authenticator:
    """Verifies JWTs (HS256 with the relay's secret, RS256/ES256 through a JWKS) and API keys."""

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._clock = clock
        secret = settings.jwt_secret
        self._hmac_key = secret.get_secret_value().encode() if secret is not None else None
        self._key_digests = tuple(_digest(k.get_secret_value()) for k in settings.api_keys)
        self._owns_http = False
        self._jwks: JwksCache | None = None
        if settings.jwks_url:
            if http is None:
                http = httpx.AsyncClient()
                self._owns_http = True
            self._jwks = JwksCache(settings.jwks_url, http, clock=clock)
        self._http = http

    async def aclose(self) -> None:
        """Close the HTTP client, but only if this Authenticator created it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()

    async def authenticate(
        self,
        *,
        authorization: str | None,
        api_key: str | None = None,
        token: str | None = None,
    ) -> Principal:
        """The caller behind the Authorization header, the X-API-Key header or `?token=`."""
        presented = [c for c in (authorization, api_key, token) if c is not None]
        if not presented:
            return ANONYMOUS
        # Two credentials could name two callers; refusing is safer than picking one.
        if len(presented) > 1:
            raise InvalidToken("more than one credential presented")
        if api_key is not None:
            return self.verify_api_key(api_key)
        if authorization is not None:
            parts = authorization.strip().split(None, 1)
            if not parts or parts[0].lower() != "bearer":
                raise InvalidToken("unsupported authorization scheme")
            credential = parts[1].strip() if len(parts) == 2 else ""
        else:
            credential = (token or "").strip()
        if not credential:
            raise InvalidToken("empty credential")
        if len(credential) > MAX_TOKEN_BYTES:
            raise InvalidToken("credential too long")
        if _JWT_SHAPE.fullmatch(credential):
            return await self.verify_jwt(credential)
        if token is not None:
            # URLs end up in proxy and browser logs: a long-lived API key must not travel there.
            raise InvalidToken("only a user token (JWT) is accepted in the query string")
        return self.verify_api_key(credential)

    def verify_api_key(self, key: str) -> Principal:
        """A backend principal for a configured API key, compared in constant time."""
        if len(key) > MAX_TOKEN_BYTES:
            raise InvalidToken("API key too long")
        digest = _digest(key)
        matched = False
        for configured in self._key_digests:
            # No early exit: the time taken does not tell which key (or how many) matched.
            matched |= hmac.compare_digest(digest, configured)
        if not matched:
            raise InvalidToken("invalid API key")
        return Principal(PrincipalKind.BACKEND, id="key:" + digest.hex()[:8], claims={})

    async def verify_jwt(self, token: str) -> Principal:
        """A user principal for a JWT whose signature, times, issuer and audience verify."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token too long")
        if not _JWT_SHAPE.fullmatch(token):
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str):
            raise InvalidToken("unsupported algorithm")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("malformed key id")
        key: Any
        if alg == "HS256" and self._hmac_key is not None:
            key, algorithm = self._hmac_key, "HS256"
        elif alg in _ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            public_key = await self._jwks.get_key(kid)
            if public_key is None:
                raise InvalidToken("unknown key id" if kid is not None else "missing key id")
            # The algorithm comes from the key, never from the token: a header that names another
            # algorithm than the key's is refused before any signature is checked.
            key, algorithm = public_key, key_algorithm(public_key)
            if algorithm != alg:
                raise InvalidToken("algorithm does not match key")
        else:
            # Covers `none`, unknown algorithms, and algorithms whose key source is not configured.
            raise InvalidToken("unsupported algorithm")
        claims = self._decode(token, key, algorithm)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            raise InvalidToken("invalid sub claim")
        self._check_times(claims)
        return Principal(PrincipalKind.USER, id=subject, claims=claims)

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        settings = self._settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],  # exactly one, chosen from the key
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                options={
                    "require": ["sub", "exp"],
                    # Times are checked in _check_times against the injected clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    # With no audience configured the relay is not a named audience, so a token
                    # issued for some `aud` is accepted; set RELAY_JWT_AUDIENCE when the identity
                    # provider also issues tokens for other services, to keep those out.
                    "verify_aud": settings.jwt_audience is not None,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"missing {exc.claim} claim") from exc
        except jwt.PyJWTError as exc:
            reason = next((text for cls, text in _JWT_ERRORS if isinstance(exc, cls)), None)
            raise InvalidToken(reason or "invalid token") from exc
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        leeway = self._settings.jwt_leeway_seconds
        expires = _timestamp(claims, "exp")
        not_before = _timestamp(claims, "nbf")
        issued = _timestamp(claims, "iat")
        if expires is None:
            raise InvalidToken("missing exp claim")
        if expires <= now - leeway:
            raise InvalidToken("token expired")
        if not_before is not None and not_before > now + leeway:
            raise InvalidToken("token not yet valid")
        if issued is not None and issued > now + leeway:
            raise InvalidToken("token issued in the future")
        # A long-lived token cannot be revoked in time; the issuer's word on its lifetime is iat.
        if expires - (issued if issued is not None else now) > self._settings.jwt_max_ttl_seconds:
            raise InvalidToken("token lifetime exceeds the maximum")
