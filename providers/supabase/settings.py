"""Supabase credentials and tuning, from the `SUPABASE_*` variables Supabase's own docs use."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from core.envsettings import EnvSettings
from providers.outbound.policy import RetryPolicy

# Realtime's documented broadcast payload limit is 256 KB on the Free plan and 3,000 KB on Pro,
# Team and Enterprise (supabase.com/docs/guides/realtime/limits). The Free figure is the default
# because it holds on every plan; raise it to 3_072_000 on a paid plan.
FREE_PLAN_PAYLOAD_BYTES = 256 * 1024
# Realtime answers 429 "please reduce the batch size" when one call carries more messages than
# the project's messages-per-second quota (100 on Free), so a call never carries more than that.
FREE_PLAN_MESSAGES_PER_SECOND = 100


class SupabaseSettings(EnvSettings):
    """Where the Supabase project is, the keys it trusts, and how hard to try."""

    env_prefix = "SUPABASE_"

    url: str
    service_role_key: SecretStr
    jwt_secret: SecretStr
    jwt_issuer: str | None = None  # default: {SUPABASE_URL}/auth/v1, what Supabase Auth uses
    jwt_audience: str = Field(default="authenticated", min_length=1)
    token_ttl_seconds: int = Field(default=600, ge=30, le=24 * 3600)
    max_payload_bytes: int = Field(default=FREE_PLAN_PAYLOAD_BYTES, ge=1024, le=16 * 1024 * 1024)
    max_messages_per_call: int = Field(default=FREE_PLAN_MESSAGES_PER_SECOND, ge=1, le=10_000)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=3, ge=1, le=10)

    @field_validator("url")
    @classmethod
    def _http_origin(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be the project URL, for example https://<ref>.supabase.co")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.strip().rstrip("/")

    @field_validator("service_role_key", "jwt_secret")
    @classmethod
    def _not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _hs256_key_length(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes (HS256 needs a 256-bit key)")
        return value

    @property
    def issuer(self) -> str:
        """The `iss` of minted tokens."""
        return self.jwt_issuer or f"{self.url}/auth/v1"

    @property
    def retry(self) -> RetryPolicy:
        """How broadcasts are retried (providers/outbound/policy.py)."""
        return RetryPolicy(attempts=self.max_attempts, timeout_seconds=self.timeout_seconds)

    @property
    def broadcast_url(self) -> str:
        """Realtime's batch broadcast endpoint."""
        return f"{self.url}/realtime/v1/api/broadcast"
