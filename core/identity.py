"""The identity gate: turns the credential a request presents into a Principal.

A request may present nothing (anonymous), a JWT (an end user) or an API key (a backend). A
credential that is presented and fails is refused with InvalidToken, never downgraded to
anonymous, so a typo in a backend's key cannot quietly turn it into an anonymous caller.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING

from core.credentials import JWT_SHAPE, MAX_TOKEN_BYTES
from core.errors import InvalidToken
from core.principal import ANONYMOUS, Principal, PrincipalKind
from core.validation import is_user_id

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from core.jwt_verifier import JwtVerifier
    from core.settings import Settings

log = logging.getLogger(__name__)


def _digest(value: str) -> bytes:
    # surrogatepass keeps the encoding one-to-one, so two different keys never share a digest.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


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
        self._key_digests = tuple(_digest(k.get_secret_value()) for k in settings.api_keys)
        self._http = http
        self._owns_http = False
        self._verifier: JwtVerifier | None = None  # built on the first token: see jwt_verifier

    async def verify_jwt(self, token: str) -> Principal:
        """A user principal for a JWT whose signature, times, issuer and audience verify."""
        if self._verifier is None:
            from core.jwt_verifier import JwtVerifier

            if self._settings.jwks_url and self._http is None:
                import httpx

                self._http = httpx.AsyncClient()
                self._owns_http = True
            self._verifier = JwtVerifier(self._settings, http=self._http, clock=self._clock)
        principal = await self._verifier.verify(token)
        if not is_user_id(principal.id):
            # Sign-in takes only the ids every user route can address: a user it signs in can
            # always be sent to and terminated (validate_user_id is the same rule).
            raise InvalidToken("invalid sub claim")
        return principal

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
        if JWT_SHAPE.fullmatch(credential):
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
