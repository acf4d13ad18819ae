"""Development tokens: what they carry, and that the relay accepts them."""

from __future__ import annotations

import os

import jwt
import pytest

from core.errors import ConfigurationError, InvalidToken
from core.identity import Authenticator
from core.settings import Settings
from core.tokens import mint_dev_token

NOW = 1_700_000_000
SECRET = "t" * 40


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RELAY_"):
            monkeypatch.delenv(name)


def test_minted_token_carries_the_expected_claims() -> None:
    token = mint_dev_token(Settings(jwt_secret=SECRET), user_id="alice", name="Alice", now=NOW)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert decoded == {
        "sub": "alice",
        "name": "Alice",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 3600,
    }


async def test_minted_token_verifies_with_the_relays_authenticator() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_issuer="relay-dev", jwt_audience="relay")
    token = mint_dev_token(settings, user_id="bob", ttl=120, now=NOW)
    auth = Authenticator(settings, clock=lambda: NOW + 60.0)
    principal = await auth.authenticate(authorization=f"Bearer {token}")
    assert principal.is_user
    assert principal.id == "bob"
    assert principal.claims["iss"] == "relay-dev"
    assert principal.claims["aud"] == "relay"
    assert "name" not in principal.claims


async def test_minted_token_verifies_against_the_real_clock() -> None:
    settings = Settings(jwt_secret=SECRET)
    principal = await Authenticator(settings).verify_jwt(mint_dev_token(settings, user_id="eve"))
    assert principal.id == "eve"


async def test_minted_token_expires_after_its_ttl() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_leeway_seconds=0)
    token = mint_dev_token(settings, user_id="bob", ttl=120, now=NOW)
    with pytest.raises(InvalidToken, match="expired"):
        await Authenticator(settings, clock=lambda: NOW + 120.0).verify_jwt(token)


def test_a_relay_without_secret_cannot_mint() -> None:
    settings = Settings(jwt_secret=None, jwks_url="https://idp.example.com/jwks.json")
    with pytest.raises(ConfigurationError) as caught:
        mint_dev_token(settings, user_id="alice")
    assert caught.value.detail.startswith("RELAY_JWT_SECRET: ")


@pytest.mark.parametrize("ttl", [0, -5, 24 * 3600 + 1])
def test_ttl_must_be_one_the_relay_accepts(ttl: int) -> None:
    with pytest.raises(ValueError, match="ttl"):
        mint_dev_token(Settings(jwt_secret=SECRET), user_id="alice", ttl=ttl)


@pytest.mark.parametrize("user_id", ["", "u" * 201])
def test_user_id_must_be_a_valid_subject(user_id: str) -> None:
    with pytest.raises(ValueError, match="user_id"):
        mint_dev_token(Settings(jwt_secret=SECRET), user_id=user_id)
