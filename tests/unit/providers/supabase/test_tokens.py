"""Minted Supabase JWTs: the claims Realtime and the compiled policies read, and nothing more."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from core.errors import InvalidToken
from core.policy import Policy
from core.principal import user
from providers.supabase import tokens
from providers.supabase.settings import SupabaseSettings

SECRET = "tokens-test-jwt-secret-0123456789abcdef"
NOW = 1_800_000_000
SETTINGS = SupabaseSettings(
    url="https://abc.supabase.co", service_role_key="service-key", jwt_secret=SECRET
)
POLICY = Policy.from_toml(
    """
[[rule]]
pattern = "private-team-{team}"
subscribe = ["claim:teams={team}", "claim:role=admin", "claim:aud=x"]
client_events = ["claim:org=acme"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
""",
    source="claims.toml",
)


def _decode(token: str, audience: str = "authenticated") -> dict[str, Any]:
    # A fixed clock: the times are checked by value below, not against the wall clock.
    claims: dict[str, Any] = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience=audience,
        options={"verify_exp": False, "verify_iat": False},
    )
    return claims


def test_policy_claims_are_the_claim_terms_minus_reserved_names() -> None:
    assert tokens.policy_claims(POLICY) == ("org", "teams")
    assert tokens.policy_claims(Policy.default()) == ()


def test_a_minted_token_has_what_supabase_expects() -> None:
    minted = tokens.mint(SETTINGS, user("alice", name="Alice"), (), now=NOW)
    header = jwt.get_unverified_header(minted.token)
    assert header["alg"] == "HS256"
    assert _decode(minted.token) == {
        "sub": "alice",
        "role": "authenticated",
        "aud": "authenticated",
        "iss": "https://abc.supabase.co/auth/v1",
        "iat": NOW,
        "exp": NOW + 600,
    }
    assert minted.answer() == {
        "access_token": minted.token,
        "token_type": "bearer",
        "expires_in": 600,
        "expires_at": NOW + 600,
    }


def test_issuer_audience_and_lifetime_are_configurable() -> None:
    settings = SETTINGS.model_copy(
        update={"jwt_issuer": "relay", "jwt_audience": "realtime", "token_ttl_seconds": 60}
    )
    claims = _decode(tokens.mint(settings, user("bob"), (), now=NOW).token, audience="realtime")
    assert (claims["iss"], claims["aud"], claims["exp"] - claims["iat"]) == (
        "relay",
        "realtime",
        60,
    )


def test_the_token_never_outlives_the_relay_token() -> None:
    minted = tokens.mint(SETTINGS, user("bob", exp=NOW + 30), (), now=NOW)
    assert minted.expires_at == NOW + 30
    assert _decode(minted.token)["exp"] == NOW + 30
    with pytest.raises(InvalidToken, match="expired"):
        tokens.mint(SETTINGS, user("bob", exp=NOW - 1), (), now=NOW)


def test_policy_claims_are_carried_as_the_relay_compares_them() -> None:
    who = user(
        "carol",
        teams=["red", 7, True, None, {"x": 1}, 2.5],
        org="acme",
        role="admin",
        email="carol@example.com",
    )
    claims = _decode(tokens.mint(SETTINGS, who, tokens.policy_claims(POLICY), now=NOW).token)
    assert claims["teams"] == ["red", 7]
    assert claims["org"] == "acme"
    assert claims["role"] == "authenticated"  # the relay's own role claim is never carried
    assert "email" not in claims  # only what the policy reads


@pytest.mark.parametrize("value", [True, 1.5, None, {"a": 1}])
def test_a_claim_the_relay_would_never_match_is_dropped(value: object) -> None:
    claims = _decode(tokens.mint(SETTINGS, user("dave", org=value), ("org",), now=NOW).token)
    assert "org" not in claims


def test_only_a_user_with_an_id_gets_a_token() -> None:
    from core.principal import ANONYMOUS

    with pytest.raises(ValueError, match="user"):
        tokens.mint(SETTINGS, ANONYMOUS, (), now=NOW)
