"""SUPABASE_* settings: read from the environment, each problem one line naming its variable."""

from __future__ import annotations

import os

import pytest

from core.errors import ConfigurationError
from core.settings import read_env
from providers.supabase.settings import SupabaseSettings

SECRET = "settings-test-jwt-secret-0123456789abcdef"
KEY = "settings-test-service-role-key"
GOOD = {
    "SUPABASE_URL": "https://abc.supabase.co/",
    "SUPABASE_SERVICE_ROLE_KEY": KEY,
    "SUPABASE_JWT_SECRET": SECRET,
}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SUPABASE_"):
            monkeypatch.delenv(name)


def _read(monkeypatch: pytest.MonkeyPatch, **env: str) -> SupabaseSettings:
    for name, value in {**GOOD, **env}.items():
        monkeypatch.setenv(name, value)
    return read_env(SupabaseSettings)


def test_defaults_follow_the_free_plan_and_supabase_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _read(monkeypatch)
    assert settings.url == "https://abc.supabase.co"
    assert settings.broadcast_url == "https://abc.supabase.co/realtime/v1/api/broadcast"
    assert settings.issuer == "https://abc.supabase.co/auth/v1"
    assert settings.jwt_audience == "authenticated"
    assert settings.max_payload_bytes == 256 * 1024
    assert settings.max_messages_per_call == 100
    assert settings.token_ttl_seconds == 600


def test_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _read(
        monkeypatch,
        SUPABASE_JWT_ISSUER="relay",
        SUPABASE_JWT_AUDIENCE="realtime",
        SUPABASE_MAX_PAYLOAD_BYTES="3072000",
        SUPABASE_TOKEN_TTL_SECONDS="120",
        SUPABASE_MAX_ATTEMPTS="5",
    )
    assert (settings.issuer, settings.jwt_audience) == ("relay", "realtime")
    assert settings.max_payload_bytes == 3_072_000
    assert settings.token_ttl_seconds == 120
    assert settings.max_attempts == 5


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SUPABASE_URL": ""}, "SUPABASE_URL"),
        ({"SUPABASE_URL": "abc.supabase.co"}, "SUPABASE_URL"),
        ({"SUPABASE_URL": "https://abc.supabase.co?x=1"}, "SUPABASE_URL"),
        ({"SUPABASE_SERVICE_ROLE_KEY": "  "}, "SUPABASE_SERVICE_ROLE_KEY"),
        ({"SUPABASE_JWT_SECRET": "too-short-secret"}, "SUPABASE_JWT_SECRET"),
        ({"SUPABASE_TOKEN_TTL_SECONDS": "5"}, "SUPABASE_TOKEN_TTL_SECONDS"),
        ({"SUPABASE_MAX_PAYLOAD_BYTES": "10"}, "SUPABASE_MAX_PAYLOAD_BYTES"),
        ({"SUPABASE_JWT_AUDIENCE": ""}, "SUPABASE_JWT_AUDIENCE"),
    ],
)
def test_a_bad_value_names_its_variable_and_never_a_secret(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _read(monkeypatch, **env)
    detail = caught.value.detail
    assert detail.startswith(f"{variable}: ")
    assert "\n" not in detail
    assert SECRET not in detail
    assert KEY not in detail


def test_a_missing_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_URL", "https://abc.supabase.co")
    monkeypatch.setenv("SUPABASE_JWT_SECRET", SECRET)
    with pytest.raises(ConfigurationError, match=r"^SUPABASE_SERVICE_ROLE_KEY: required, not set$"):
        read_env(SupabaseSettings)


def test_secrets_stay_out_of_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    text = repr(_read(monkeypatch))
    assert SECRET not in text
    assert KEY not in text
