"""JWT verification for the identity gate, imported on the first token only: PyJWT pulls in
cryptography, which a Lambda answering API-key requests need not load at all.

Verified tokens are remembered (by digest, for a few minutes, in a bounded map): a browser sends
the same token on every request, and its times are checked again each time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, NamedTuple

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from core.credentials import JWT_SHAPE, MAX_TOKEN_BYTES
from core.errors import InvalidToken
from core.principal import Principal, PrincipalKind

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from core.jwks import JwksCache
    from core.settings import Settings

MAX_SUBJECT_CHARS = 200
_ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})
# How long a verified signature is trusted without checking it again (a JWKS key withdrawn by
# the identity provider stops being trusted within this), and how many tokens are remembered.
VERIFIED_TTL_SECONDS = 300.0
VERIFIED_MAX_TOKENS = 10_000

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


class _DuplicateKey(Exception):
    """A JSON object of the token names one member twice (not a ValueError on purpose)."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _DuplicateKey
    return found


def _refuse_duplicate_keys(token: str) -> None:
    """Refuse a token whose header or payload names a member twice.

    PyJWT's json.loads keeps the last of two equal keys; another parser (the issuer's, an
    audit log's) may keep the first. A signed name read two ways is refused, never resolved."""
    for segment in token.split(".", 2)[:2]:
        try:
            raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
            json.loads(raw, object_pairs_hook=_unique_object)
        except _DuplicateKey:
            raise InvalidToken("duplicate key in token") from None
        except ValueError:  # not base64url or not JSON: PyJWT says what is wrong with it
            return


def _timestamp(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim, or None when absent; NaN/Infinity would defeat every comparison."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken(f"invalid {name} claim")
    return float(value)


class _Times(NamedTuple):
    """A token's NumericDate claims, read and checked for type once per token."""

    expires: float
    not_before: float | None
    issued: float | None


def _times(claims: dict[str, Any]) -> _Times:
    expires = _timestamp(claims, "exp")
    not_before = _timestamp(claims, "nbf")
    issued = _timestamp(claims, "iat")
    if expires is None:
        raise InvalidToken("missing exp claim")
    return _Times(expires, not_before, issued)


class JwtVerifier:
    """HS256 with the relay's secret; RS256/ES256 through the JWKS; times with a small leeway."""

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._clock = clock
        secret = settings.jwt_secret
        self._hmac_key = secret.get_secret_value().encode() if secret is not None else None
        self._jwks: JwksCache | None = None
        if settings.jwks_url and http is not None:
            from core.jwks import JwksCache

            self._jwks = JwksCache(settings.jwks_url, http, clock=clock)
        # digest -> (claims, when verified, their times read once)
        self._verified: OrderedDict[bytes, tuple[dict[str, Any], float, _Times]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """A user principal for a JWT whose signature, times, issuer and audience verify."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token too long")
        if not JWT_SHAPE.fullmatch(token):
            raise InvalidToken("malformed token")
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self._verified.get(digest)
        if remembered is not None and self._clock() - remembered[1] < VERIFIED_TTL_SECONDS:
            claims, _, times = remembered
            self._check_times(times)  # expiry moves on even when the signature is known good
            return Principal(PrincipalKind.USER, id=claims["sub"], claims=claims)
        _refuse_duplicate_keys(token)  # once per token: a remembered one passed it already
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
            from core.jwks import key_algorithm

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
        times = _times(claims)
        self._check_times(times)
        self._verified[digest] = (claims, self._clock(), times)
        if len(self._verified) > VERIFIED_MAX_TOKENS:
            self._verified.popitem(last=False)
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

    def _check_times(self, times: _Times) -> None:
        now = self._clock()
        leeway = self._settings.jwt_leeway_seconds
        expires, not_before, issued = times
        if expires <= now - leeway:
            raise InvalidToken("token expired")
        if not_before is not None and not_before > now + leeway:
            raise InvalidToken("token not yet valid")
        if issued is not None and issued > now + leeway:
            raise InvalidToken("token issued in the future")
        # A long-lived token cannot be revoked in time; the issuer's word on its lifetime is iat.
        if expires - (issued if issued is not None else now) > self._settings.jwt_max_ttl_seconds:
            raise InvalidToken("token lifetime exceeds the maximum")
