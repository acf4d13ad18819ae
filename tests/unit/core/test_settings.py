"""The relay's settings: defaults, development-default warnings, and one-line errors."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import pytest

from core.errors import ConfigurationError
from core.settings import (
    DEV_API_KEY,
    DEV_APP_ID,
    DEV_APP_KEY,
    DEV_APP_SECRET,
    DEV_JWT_SECRET,
    Settings,
    load_settings,
    warn_about_dev_defaults,
)

if TYPE_CHECKING:
    from pathlib import Path

DEV_SECRETS = (DEV_APP_SECRET, DEV_JWT_SECRET, DEV_API_KEY)

# Values that replace every development default.
OWN_VALUES = {
    "RELAY_APP_ID": "424242",
    "RELAY_APP_KEY": "own-app-key",
    "RELAY_APP_SECRET": "own-app-secret-0123456789abcdef",
    "RELAY_JWT_SECRET": "own-jwt-secret-0123456789abcdef-0123456789",
    "RELAY_API_KEYS": "own-api-key-0123456789",
}
DEV_VARIABLES = list(OWN_VALUES)
SECRET_VARIABLES = ("RELAY_APP_SECRET", "RELAY_JWT_SECRET", "RELAY_API_KEYS")


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Names match case-insensitively (core/envsettings.py), so clear relay_* spellings too.
    for name in list(os.environ):
        if name.upper().startswith("RELAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def own_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in OWN_VALUES.items():
        monkeypatch.setenv(name, value)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "core.settings" and r.levelno == logging.WARNING
    ]


def _config_error(*, secrets: tuple[str, ...] = ()) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    error = caught.value
    assert "\n" not in error.detail
    assert error.detail == str(error)
    for secret in secrets:
        assert secret not in error.detail
    return error


def test_defaults_load() -> None:
    settings = load_settings()
    assert settings.env == "development"
    assert settings.provider == "local"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.log_level == "INFO"
    assert settings.app_id == DEV_APP_ID
    assert settings.app_key == DEV_APP_KEY
    assert settings.app_secret.get_secret_value() == DEV_APP_SECRET
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET
    assert [k.get_secret_value() for k in settings.api_keys] == [DEV_API_KEY]
    assert settings.jwks_url is None
    assert settings.policy_file is None
    assert settings.max_channels_per_event == 100


def _load_and_warn() -> Settings:
    settings = load_settings()
    warn_about_dev_defaults(settings)
    return settings


def test_loading_alone_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    # `relay token`, `publish`, `policy explain` load settings too: only serving warns.
    with caplog.at_level(logging.WARNING, logger="core.settings"):
        assert load_settings().dev_defaults_in_use == DEV_VARIABLES
    assert _warnings(caplog) == []


def test_every_dev_default_is_listed_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="core.settings"):
        settings = _load_and_warn()
    assert settings.dev_defaults_in_use == DEV_VARIABLES
    (warning,) = _warnings(caplog)
    for name in DEV_VARIABLES:
        assert name in warning
    for secret in DEV_SECRETS:
        assert secret not in warning


@pytest.mark.parametrize("still_default", DEV_VARIABLES)
def test_each_dev_default_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, still_default: str
) -> None:
    for name, value in OWN_VALUES.items():
        if name != still_default:
            monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="core.settings"):
        settings = _load_and_warn()
    assert settings.dev_defaults_in_use == [still_default]
    (warning,) = _warnings(caplog)
    assert still_default in warning
    for other in DEV_VARIABLES:
        if other != still_default:
            assert other not in warning
    for secret in (*DEV_SECRETS, *(OWN_VALUES[name] for name in SECRET_VARIABLES)):
        assert secret not in warning


@pytest.mark.usefixtures("own_values")
def test_no_warning_without_dev_defaults(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="core.settings"):
        settings = _load_and_warn()
    assert settings.dev_defaults_in_use == []
    assert _warnings(caplog) == []


def test_a_dev_api_key_among_others_is_still_a_dev_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAY_API_KEYS", f"own-api-key-0123456789,{DEV_API_KEY}")
    assert "RELAY_API_KEYS" in load_settings().dev_defaults_in_use


@pytest.mark.usefixtures("own_values")
def test_production_without_dev_defaults_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_ENV", "production")
    assert load_settings().env == "production"


@pytest.mark.parametrize("still_default", DEV_VARIABLES)
def test_production_refuses_each_dev_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, still_default: str
) -> None:
    monkeypatch.setenv("RELAY_ENV", "production")
    for name, value in OWN_VALUES.items():
        if name != still_default:
            monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="core.settings"):
        error = _config_error(secrets=DEV_SECRETS)
    assert error.detail.startswith(f"{still_default}: ")
    assert "RELAY_ENV=production" in error.detail
    assert _warnings(caplog) == []


def test_production_with_every_dev_default_names_them_all_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAY_ENV", "production")
    error = _config_error(secrets=DEV_SECRETS)
    assert error.problems == (
        "RELAY_APP_ID, RELAY_APP_KEY, RELAY_APP_SECRET, RELAY_JWT_SECRET, RELAY_API_KEYS: set "
        "your own; the development defaults are refused when RELAY_ENV=production",
    )


@pytest.mark.parametrize("provider", ["pusher", "ably", "supabase"])
def test_providers_with_their_own_credentials_need_no_relay_app_credentials(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, provider: str
) -> None:
    monkeypatch.setenv("RELAY_PROVIDER", provider)
    with caplog.at_level(logging.WARNING, logger="core.settings"):
        settings = _load_and_warn()
    assert settings.dev_defaults_in_use == ["RELAY_JWT_SECRET", "RELAY_API_KEYS"]
    (warning,) = _warnings(caplog)
    assert "RELAY_APP_" not in warning
    monkeypatch.setenv("RELAY_ENV", "production")
    for name in ("RELAY_JWT_SECRET", "RELAY_API_KEYS"):
        monkeypatch.setenv(name, OWN_VALUES[name])
    assert load_settings().provider == provider


def test_production_reports_every_problem_in_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_ENV", "production")
    monkeypatch.setenv("RELAY_PORT", "http")
    monkeypatch.setenv("RELAY_APP_SECRET", "short-secret")
    monkeypatch.setenv("RELAY_APP_KEY", "has space")
    monkeypatch.setenv("RELAY_RATE_LIMITS", "sometimes")
    error = _config_error(secrets=("short-secret", *DEV_SECRETS))
    assert error.problems == (
        "RELAY_PORT: must be a whole number",
        "RELAY_APP_KEY: must be letters, digits, '_', '.' and '-'",
        "RELAY_APP_SECRET: must be at least 16 characters: it signs every subscription",
        "RELAY_RATE_LIMITS: must be true or false (also 1 or 0, yes or no, on or off)",
        "RELAY_APP_ID, RELAY_JWT_SECRET, RELAY_API_KEYS: set your own; the development "
        "defaults are refused when RELAY_ENV=production",
    )
    assert error.detail == "; ".join(error.problems)


BAD_VALUES = [
    ("RELAY_PORT", "abc"),
    ("RELAY_PORT", "0"),
    ("RELAY_PORT", "65536"),
    ("RELAY_PORT", "-1"),
    ("RELAY_PROVIDER", "nope"),
    ("RELAY_ENV", "staging"),
    ("RELAY_LOG_LEVEL", "verbose"),
    ("RELAY_APP_ID", "app id"),  # letters, digits, - and _ (as soketi takes them), nothing else
    ("RELAY_APP_ID", "app.id"),
    ("RELAY_APP_ID", "1" * 65),
    ("RELAY_APP_KEY", "has space"),
    ("RELAY_APP_KEY", "k" * 65),
    ("RELAY_API_KEYS", "short-secretXYZ"),
    ("RELAY_API_KEYS", "long-enough-secret-key-one,tinysecretXY"),
    ("RELAY_API_KEYS", " , ,"),
    ("RELAY_JWT_SECRET", "short-jwt-secretXYZ"),
    ("RELAY_JWT_SECRET", "s" * 31),
    ("RELAY_JWT_LEEWAY_SECONDS", "301"),
    ("RELAY_ACTIVITY_TIMEOUT_SECONDS", "4"),
    ("RELAY_MAX_BODY_BYTES", "1023"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    # No bad value is echoed back: secrets above all, but nothing else either.
    echoed = tuple(part.strip() for part in value.split(",") if len(part.strip()) >= 3)
    error = _config_error(secrets=echoed)
    assert error.detail.startswith(f"{name}: ")
    assert len(error.detail) > len(name) + 2
    # Plain words, not pydantic's.
    assert not any(words in error.detail for words in ("Input should", "String should", "Value"))
    assert error.type == "urn:realtime-relay:problem:configuration"


@pytest.mark.parametrize(
    "value", ["short", "x" * 15, "short-secret-value", "s" * 31, "secret-that-is-31-bytes-long!!!"]
)
def test_a_short_jwt_secret_never_appears_in_the_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("RELAY_JWT_SECRET", value)
    error = _config_error(secrets=(value,))
    assert error.detail.startswith("RELAY_JWT_SECRET: ")
    assert value not in repr(error.args)


@pytest.mark.parametrize("value", ["short", "x" * 15, "tiny-secret-key"])
def test_a_short_api_key_never_appears_in_the_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("RELAY_API_KEYS", f"long-enough-secret-key-one,{value}")
    error = _config_error(secrets=(value, "long-enough-secret-key-one"))
    assert error.detail.startswith("RELAY_API_KEYS: ")


def test_jwt_secret_length_is_counted_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_JWT_SECRET", "€" * 11)  # 11 characters, 33 bytes
    settings = load_settings()
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == "€" * 11


def test_jwt_secret_of_exactly_32_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_JWT_SECRET", "s" * 32)
    assert load_settings().jwt_secret is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("key-one-0123456789", ["key-one-0123456789"]),
        (
            " key-one-0123456789 , key-two-0123456789 ",
            ["key-one-0123456789", "key-two-0123456789"],
        ),
        (
            "key-one-0123456789,,key-two-0123456789,",
            ["key-one-0123456789", "key-two-0123456789"],
        ),
        ("\tkey-one-0123456789\t", ["key-one-0123456789"]),
    ],
)
def test_api_keys_split_on_commas_and_strip(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("RELAY_API_KEYS", value)
    settings = load_settings()
    assert [k.get_secret_value() for k in settings.api_keys] == expected


def test_api_key_of_exactly_16_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_API_KEYS", "k" * 16)
    assert [k.get_secret_value() for k in load_settings().api_keys] == ["k" * 16]


def test_empty_jwt_secret_without_jwks_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_JWT_SECRET", "")
    error = _config_error()
    assert error.detail.startswith("RELAY_JWT_SECRET: ")
    assert "RELAY_JWKS_URL" in error.detail


def test_empty_jwt_secret_with_jwks_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_JWT_SECRET", "")
    monkeypatch.setenv("RELAY_JWKS_URL", "https://id.example.com/.well-known/jwks.json")
    settings = load_settings()
    assert settings.jwt_secret is None
    assert "RELAY_JWT_SECRET" not in settings.dev_defaults_in_use


def test_lowercase_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("relay_port", "9001")
    assert load_settings().port == 9001


def test_values_are_parsed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RELAY_PORT", "65535")
    monkeypatch.setenv("RELAY_PROVIDER", "pusher")
    monkeypatch.setenv("RELAY_POLICY_FILE", str(tmp_path / "policy.toml"))
    monkeypatch.setenv("RELAY_SSE_HEARTBEAT_SECONDS", "2.5")
    settings = load_settings()
    assert settings.port == 65535
    assert settings.provider == "pusher"
    assert settings.policy_file == tmp_path / "policy.toml"
    assert settings.sse_heartbeat_seconds == 2.5


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.usefixtures("own_values")
def test_empty_app_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_ENV", "production")
    monkeypatch.setenv("RELAY_APP_SECRET", "")
    assert _config_error().detail.startswith("RELAY_APP_SECRET: ")
