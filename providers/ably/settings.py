"""Ably credentials and tuning, from `ABLY_*` variables (`ABLY_API_KEY` is Ably's own name)."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from core.envsettings import EnvSettings
from providers.outbound.policy import RetryPolicy

# An Ably API key is "appId.keyId:keySecret"; the part before the colon is the key name.
_KEY = re.compile(r"[^\s.:]+\.[^\s.:]+:\S+")
DEFAULT_REST_HOST = "main.realtime.ably.net"  # the REST API reference's host for the main endpoint
BACKOFF_CAP_SECONDS = 2.0  # Ably's waits between attempts grow to 2 s (the others': 1 s)


def _check_key(value: SecretStr | None) -> SecretStr | None:
    # The message names the expected shape, never the value: it is a secret.
    if value is not None and not _KEY.fullmatch(value.get_secret_value()):
        raise ValueError('must look like "appId.keyId:secret" (copy it from the Ably dashboard)')
    return value


class AblySettings(EnvSettings):
    """Where the Ably app is and how to talk to it."""

    env_prefix = "ABLY_"

    api_key: SecretStr
    rest_host: str = Field(default=DEFAULT_REST_HOST, pattern=r"^[A-Za-z0-9.:\[\]-]{1,253}$")
    rest_port: int | None = Field(default=None, ge=1, le=65535)
    tls: bool = True
    # Ably accepts token TTLs up to 24 hours; ably-js renews a token before it expires.
    token_ttl_seconds: int = Field(default=3600, ge=60, le=86_400)
    # Ably's default message limit is 64 KiB (name + data + clientId + extras); plans differ.
    max_message_bytes: int = Field(default=65_536, ge=1024, le=16 * 1024 * 1024)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=3, ge=1, le=10)
    # A 429's Retry-After is honoured up to this many seconds per wait.
    max_retry_wait_seconds: float = Field(default=10.0, ge=0, le=120)
    max_in_flight: int = Field(default=8, ge=1, le=64)
    # The key the Ably integration rule signs batched webhooks with; ABLY_API_KEY when unset.
    webhook_key: SecretStr | None = None
    allow_unsigned_webhooks: bool = False

    _api_key_shape = field_validator("api_key")(_check_key)
    _webhook_key_shape = field_validator("webhook_key")(_check_key)

    @property
    def key_name(self) -> str:
        """The public half of the key, `appId.keyId`."""
        return self.api_key.get_secret_value().partition(":")[0]

    @property
    def key_secret(self) -> str:
        """The secret half of the key; it signs TokenRequests and never leaves the relay."""
        return self.api_key.get_secret_value().partition(":")[2]

    @property
    def signing_key(self) -> tuple[str, str]:
        """(key name, secret) of the key webhooks are signed with."""
        key = (self.webhook_key or self.api_key).get_secret_value()
        name, _, secret = key.partition(":")
        return name, secret

    @property
    def retry(self) -> RetryPolicy:
        """How calls to Ably are retried (providers/outbound/policy.py): a 429's Retry-After is
        honoured, up to ABLY_MAX_RETRY_WAIT_SECONDS."""
        return RetryPolicy(
            attempts=self.max_attempts,
            timeout_seconds=self.timeout_seconds,
            backoff_cap_seconds=BACKOFF_CAP_SECONDS,
            max_retry_wait_seconds=self.max_retry_wait_seconds,
        )

    @property
    def base_url(self) -> str:
        """The REST API's origin."""
        scheme = "https" if self.tls else "http"
        port = self.rest_port or (443 if self.tls else 80)
        return f"{scheme}://{self.rest_host}:{port}"
