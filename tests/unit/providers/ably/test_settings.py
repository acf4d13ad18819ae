"""ABLY_* settings: one clear line naming a bad variable, never its value."""

from __future__ import annotations

import os

import pytest

from core.errors import ConfigurationError
from core.settings import Settings, read_env
from providers.ably.provider import AblyProvider
from providers.ably.settings import AblySettings
from providers.registry import create_provider

SECRET = "Zm9vYmFyYmF6cXV4"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("ABLY_", "RELAY_")):
            monkeypatch.delenv(name)


def test_a_missing_key_names_the_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        read_env(AblySettings)
    assert str(caught.value).startswith("ABLY_API_KEY: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("bad", ["no-colon", f"nodot:{SECRET}", f"app.key:{SECRET} more", ":x"])
def test_a_malformed_key_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("ABLY_API_KEY", bad)
    with pytest.raises(ConfigurationError) as caught:
        read_env(AblySettings)
    message = str(caught.value)
    assert message.startswith("ABLY_API_KEY: ")
    assert bad not in message
    assert SECRET not in message


def test_a_malformed_webhook_key_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLY_API_KEY", f"app.key:{SECRET}")
    monkeypatch.setenv("ABLY_WEBHOOK_KEY", "whsec")
    with pytest.raises(ConfigurationError, match=r"^ABLY_WEBHOOK_KEY: "):
        read_env(AblySettings)


def test_key_halves_hosts_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLY_API_KEY", f"app.key:{SECRET}")
    settings = read_env(AblySettings)
    assert (settings.key_name, settings.key_secret) == ("app.key", SECRET)
    assert settings.base_url == "https://main.realtime.ably.net:443"
    assert settings.signing_key == ("app.key", SECRET)
    assert settings.max_message_bytes == 65_536
    assert settings.allow_unsigned_webhooks is False
    assert SECRET not in repr(settings)


def test_a_local_endpoint_and_a_separate_webhook_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLY_API_KEY", f"app.key:{SECRET}")
    monkeypatch.setenv("ABLY_REST_HOST", "127.0.0.1")
    monkeypatch.setenv("ABLY_REST_PORT", "8081")
    monkeypatch.setenv("ABLY_TLS", "false")
    monkeypatch.setenv("ABLY_WEBHOOK_KEY", "app.hook:other-secret")
    settings = read_env(AblySettings)
    assert settings.base_url == "http://127.0.0.1:8081"
    assert settings.signing_key == ("app.hook", "other-secret")


def test_the_registry_builds_the_provider_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ABLY_API_KEY", f"app.key:{SECRET}")
    monkeypatch.setenv("ABLY_MAX_MESSAGE_BYTES", "131072")
    provider = create_provider(Settings(provider="ably"))
    assert isinstance(provider, AblyProvider)
    assert provider.limits.max_payload_bytes == 131_072


def test_the_registry_reports_a_missing_key_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match=r"^ABLY_API_KEY: "):
        create_provider(Settings(provider="ably"))
