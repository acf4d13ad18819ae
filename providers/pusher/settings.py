"""Pusher credentials and tuning, from the `PUSHER_*` variables Pusher's own docs use."""

from __future__ import annotations

from pydantic import Field, SecretStr

from core.envsettings import EnvSettings
from core.settings import MasterKeyBase64, decode_master_key
from providers.outbound.policy import RetryPolicy


class PusherSettings(EnvSettings):
    """Where the Pusher app is and how to talk to it."""

    env_prefix = "PUSHER_"

    app_id: str = Field(pattern=r"^[0-9]{1,20}$")
    key: str = Field(min_length=1, max_length=64, pattern=r"^[\w.-]+$")
    secret: SecretStr
    cluster: str = Field(default="mt1", pattern=r"^[a-z0-9-]{1,32}$")
    host: str | None = None  # a self-hosted Pusher-protocol server (soketi); else the cluster's
    port: int | None = Field(default=None, ge=1, le=65535)
    use_tls: bool = True
    encryption_master_key_base64: MasterKeyBase64 = None
    # Pusher's limit is 10 KB per event; plans with larger messages raise it.
    max_payload_bytes: int = Field(default=10_240, ge=1024, le=1024 * 1024)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=3, ge=1, le=10)
    # One call in flight: what arrives meanwhile rides the next batch call (measured: 5x the SDK's
    # throughput at 32 publishers, where 4 in flight managed 1.6x, see docs/benchmarks.md).
    max_in_flight: int = Field(default=1, ge=1, le=64)

    @property
    def retry(self) -> RetryPolicy:
        """How calls to Pusher are retried (providers/outbound/policy.py)."""
        return RetryPolicy(attempts=self.max_attempts, timeout_seconds=self.timeout_seconds)

    @property
    def base_url(self) -> str:
        """The HTTP API's origin."""
        scheme = "https" if self.use_tls else "http"
        host = self.host or f"api-{self.cluster}.pusher.com"
        port = self.port or (443 if self.use_tls else 80)
        return f"{scheme}://{host}:{port}"

    @property
    def master_key(self) -> bytes | None:
        """The decoded encryption master key, if end-to-end encryption is configured."""
        return decode_master_key(self.encryption_master_key_base64)
