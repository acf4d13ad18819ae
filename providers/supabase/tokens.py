"""Supabase-compatible user JWTs for supabase-js `realtime.setAuth`, signed HS256 with the
project's JWT secret.

Realtime verifies the signature, requires a numeric `exp` in the future and a numeric `iat`, and
runs the RLS check as the Postgres role named by `role`. The policies `relay supabase policies`
compiles read `sub` and the claims that `claim:` terms name, so exactly those are carried over
from the relay's own token, normalized the way the relay compares them (strings and integers only).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from msgspec import Struct

from core.errors import InvalidToken
from core.policy.rules import ClaimIs

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from core.policy import Policy
    from core.principal import Principal
    from providers.supabase.settings import SupabaseSettings

AUTHENTICATED_ROLE = "authenticated"
# Claims that mean something to Supabase or to JWT itself: a policy claim of the same name cannot
# be carried over (the relay's `role` claim is not the Postgres role), so the compiler denies it.
RESERVED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "role", "aal", "amr", "session_id"}
)


class MintedToken(Struct, frozen=True):
    """A signed token and the moment it stops working."""

    token: str
    issued_at: int
    expires_at: int

    def answer(self) -> dict[str, Any]:
        """The `/auth/token` body, in the OAuth token-response shape supabase clients know."""
        return {
            "access_token": self.token,
            "token_type": "bearer",
            "expires_in": self.expires_at - self.issued_at,
            "expires_at": self.expires_at,
        }


def policy_claims(policy: Policy) -> tuple[str, ...]:
    """The claim names the policy's `claim:` terms read, reserved names left out, sorted."""
    names = {
        term.claim
        for rule in policy.rules
        for terms in rule.permissions.values()
        for term in terms
        if isinstance(term, ClaimIs)
    }
    return tuple(sorted(names - RESERVED_CLAIMS))


def _comparable(value: object) -> bool:
    # The relay compares claims only as strings or integers; bool is an int and is left out.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def carried_claims(claims: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The named claims the policy can compare: scalars as they are, lists cut to their usable
    items; anything else is dropped, since the relay would never grant on it either."""
    carried: dict[str, Any] = {}
    for name in names:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, list | tuple):
            carried[name] = [item for item in value if _comparable(item)]
        elif _comparable(value):
            carried[name] = value
    return carried


def mint(
    settings: SupabaseSettings,
    principal: Principal,
    claim_names: Iterable[str],
    *,
    now: float | None = None,
) -> MintedToken:
    """A token for a signed-in end user, never outliving the relay token that proved who it is."""
    if principal.id is None:
        raise ValueError("only a user with an id can get a Supabase token")
    issued = int(time.time() if now is None else now)
    expires = issued + settings.token_ttl_seconds
    relay_expiry = principal.claims.get("exp")
    if isinstance(relay_expiry, int | float) and not isinstance(relay_expiry, bool):
        expires = min(expires, int(relay_expiry))
    if expires <= issued:  # the relay token expired within the verifier's leeway
        raise InvalidToken("token expired")
    claims: dict[str, Any] = carried_claims(principal.claims, claim_names)
    claims.update(
        {
            "sub": principal.id,
            "role": AUTHENTICATED_ROLE,
            "aud": settings.jwt_audience,
            "iss": settings.issuer,
            "iat": issued,
            "exp": expires,
        }
    )
    import jwt  # on the first token only: PyJWT (and cryptography, where installed) is ~40 ms

    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
    return MintedToken(token, issued, expires)
