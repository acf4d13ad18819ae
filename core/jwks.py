"""An async cache of an identity provider's signing keys (a JWK set fetched over HTTPS).

Only the two asymmetric algorithms the relay accepts are kept: RSA keys (RS256) and EC P-256
keys (ES256). Each key is bound to exactly one algorithm here, so the identity gate can choose
the algorithm from the key, never from the token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWTError

from core.errors import ProviderUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

PublicKey = RSAPublicKey | EllipticCurvePublicKey

FETCH_TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
REFRESH_INTERVAL_SECONDS = 60.0
# Keys are re-read this often even when every kid is known, so that a key the provider has
# withdrawn (for example after a compromise) stops being trusted without a restart.
MAX_AGE_SECONDS = 3600.0
MIN_RSA_BITS = 2048


class JwksFetchError(Exception):
    """The JWK set could not be fetched or is not a JWK set (internal; never leaves this module)."""


def key_algorithm(key: PublicKey) -> str:
    """The one JWS algorithm a cached key may verify: RS256 for RSA, ES256 for EC P-256."""
    if isinstance(key, RSAPublicKey):
        return "RS256"
    return "ES256"


def parse_jwk(jwk: object) -> tuple[str | None, PublicKey] | None:
    """Turn one JWK into (kid, public key), or None when the relay cannot or must not use it."""
    if not isinstance(jwk, dict):
        return None
    kid, kty, alg = jwk.get("kid"), jwk.get("kty"), jwk.get("alg")
    if kid is not None and not isinstance(kid, str):
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    if "d" in jwk:
        # A published private key is a provider misconfiguration; trusting it would let anyone
        # who read the JWK set mint tokens.
        log.warning("ignoring a JWK that carries private key material (kid=%r)", kid)
        return None
    try:
        if kty == "RSA" and alg in (None, "RS256"):
            rsa_key = RSAAlgorithm.from_jwk(jwk)
            if isinstance(rsa_key, RSAPublicKey) and rsa_key.key_size >= MIN_RSA_BITS:
                return kid, rsa_key
        elif kty == "EC" and alg in (None, "ES256") and jwk.get("crv") == "P-256":
            ec_key = ECAlgorithm.from_jwk(jwk)
            if isinstance(ec_key, EllipticCurvePublicKey) and isinstance(ec_key.curve, SECP256R1):
                return kid, ec_key
    except (PyJWTError, ValueError, TypeError, KeyError):
        log.warning("ignoring a malformed JWK (kid=%r)", kid)
    return None


class JwksCache:
    """Lazily loaded, rate-limited, coalescing cache of the keys published at one JWKS URL."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        refresh_interval: float = REFRESH_INTERVAL_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
    ) -> None:
        self._url = url
        self.host = urlsplit(url).hostname or "unknown host"
        self._http = http
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._max_age = max_age
        self._lock = asyncio.Lock()
        self._keys: dict[str, PublicKey] | None = None  # None until the first successful fetch
        self._only_key: PublicKey | None = None  # set when the set holds exactly one usable key
        self._loaded_at = 0.0
        self._last_attempt: float | None = None
        self._last_unknown_kid_refresh: float | None = None
        self._last_error: Exception | None = None
        self._generation = 0  # bumped by every fetch attempt, so waiters can tell one happened

    async def get_key(self, kid: str | None) -> PublicKey | None:
        """The key for `kid` (or the only key when `kid` is None); None when the set has none.

        Raises ProviderUnavailable when the endpoint fails and the cached keys cannot answer.
        """
        stale = self._clock() - self._loaded_at >= self._max_age and self._due(self._last_attempt)
        fetched = self._keys is None or stale
        if fetched:
            await self._fetch_once(self._generation)
        if self._keys is None:
            raise self._unavailable() from self._last_error
        key = self._lookup(kid)
        if key is not None:
            return key
        # Only a named, unknown kid suggests a rotation worth a refresh; a refresh right after
        # the fetch this call already made could not tell us anything new. While a fetch is in
        # flight, wait for it (the generation check makes that a wait, not a second fetch).
        refresh = self._lock.locked() or self._due(self._last_unknown_kid_refresh)
        if kid is not None and not fetched and refresh:
            await self._fetch_once(self._generation, unknown_kid=True)
            key = self._lookup(kid)
            if key is not None:
                return key
        if self._last_error is not None:
            # The provider may have rotated to a key we could not fetch: say "try later",
            # not "your token is bad".
            raise self._unavailable() from self._last_error
        return None

    def _due(self, since: float | None) -> bool:
        return since is None or self._clock() - since >= self._refresh_interval

    def _lookup(self, kid: str | None) -> PublicKey | None:
        if kid is None:
            return self._only_key
        return (self._keys or {}).get(kid)

    def _unavailable(self) -> ProviderUnavailable:
        detail = f"the JWKS endpoint at {self.host} is unavailable"
        return ProviderUnavailable(detail, retry_after=5)

    async def _fetch_once(self, seen_generation: int, *, unknown_kid: bool = False) -> None:
        """Fetch unless another task fetched while this one waited for the lock."""
        async with self._lock:
            if self._generation != seen_generation:
                return
            if unknown_kid and not self._due(self._last_unknown_kid_refresh):
                return  # re-checked under the lock: the once-per-interval limit is a promise
            self._last_attempt = self._clock()
            if unknown_kid:
                self._last_unknown_kid_refresh = self._last_attempt
            try:
                jwks = await self._download()
            except (httpx.HTTPError, JwksFetchError, ValueError) as exc:
                # Logged by host only: the URL's path or query may carry a tenant secret.
                log.warning("JWKS fetch from %s failed: %s", self.host, type(exc).__name__)
                self._last_error = exc
            else:
                self._install(jwks)
                self._last_error = None
            finally:
                self._generation += 1

    def _install(self, jwks: list[Any]) -> None:
        keys: dict[str, PublicKey] = {}
        usable: list[PublicKey] = []
        for jwk in jwks:
            parsed = parse_jwk(jwk)
            if parsed is None:
                continue
            kid, key = parsed
            if kid is not None:
                if kid in keys:
                    log.warning("JWKS from %s repeats kid %r; keeping the first", self.host, kid)
                    continue
                keys[kid] = key
            usable.append(key)
        self._keys = keys
        # A key without a kid can only be chosen unambiguously when it is the only one.
        self._only_key = usable[0] if len(usable) == 1 else None
        self._loaded_at = self._clock()
        if not usable:
            log.warning("JWKS from %s has no usable RS256/ES256 signing key", self.host)
        log.info("loaded %d signing key(s) from %s", len(usable), self.host)

    async def _download(self) -> list[Any]:
        body = bytearray()
        async with self._http.stream(
            "GET", self._url, timeout=FETCH_TIMEOUT_SECONDS, headers={"Accept": "application/json"}
        ) as response:
            if response.status_code != httpx.codes.OK:
                raise JwksFetchError(f"HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                raise JwksFetchError("response too large")
            # Counted as it streams, so a huge (or endlessly compressed) body is cut off early.
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise JwksFetchError("response too large")
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise JwksFetchError("not a JWK set")
        return list(document["keys"])
