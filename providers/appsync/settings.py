"""The appsync provider's settings, from `APPSYNC_*` variables (serverless.yml sets them)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

from core.envsettings import EnvSettings
from providers.outbound.policy import RetryPolicy

# AppSync Events' documented limits:
# https://docs.aws.amazon.com/appsync/latest/eventapi/publish-http.html (5 events in a batch)
# https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-concepts.html ("240 KB per event")
EVENTS_PER_PUBLISH = 5
MAX_EVENT_BYTES = 240 * 1024
# What the relay's envelope ({"event", "data", "id"}) may add to a payload: the event name (200
# characters at most), the id and the JSON punctuation.
ENVELOPE_BYTES = 1024
# https://docs.aws.amazon.com/appsync/latest/APIReference/API_ChannelNamespace.html
NAMESPACE_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9\-]{0,48}[A-Za-z0-9])?$"
AUTHORIZER_MAX_TTL_SECONDS = 3600  # LambdaAuthorizerConfig.authorizerResultTtlInSeconds


class AppSyncSettings(EnvSettings):
    """Where the Event API is, how the relay proves itself to it, and how long AppSync may keep
    the authorizer's answers."""

    env_prefix = "APPSYNC_"

    # The API's HTTP domain (`<id>.appsync-api.<region>.amazonaws.com`, or a custom domain), or
    # APPSYNC_ENDPOINT: a whole origin (`http://127.0.0.1:9000` for a local stand-in).
    http_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")
    endpoint: str | None = Field(default=None, pattern=r"^https?://[^/?#]+$")
    region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("APPSYNC_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    # Publishes are signed with SigV4 from the function's role; with a key they carry x-api-key
    # instead (the namespace must list API_KEY among its publish modes; never give it to clients).
    api_key: SecretStr | None = None
    # The one channel namespace the relay's channels live under: `<namespace>/<channel>`.
    namespace: str = Field(default="relay", pattern=NAMESPACE_PATTERN)
    max_payload_bytes: int = Field(
        default=MAX_EVENT_BYTES - ENVELOPE_BYTES, ge=1024, le=MAX_EVENT_BYTES - ENVELOPE_BYTES
    )
    timeout_seconds: float = Field(default=5.0, gt=0, le=29)
    max_attempts: int = Field(default=3, ge=1, le=10)
    # How long AppSync may reuse the authorizer's answer to a connection (bounded by the token's
    # own expiry); channel decisions are never cached (providers/appsync/authorizer.py).
    authorizer_ttl_seconds: int = Field(default=300, ge=0, le=AUTHORIZER_MAX_TTL_SECONDS)

    @property
    def base_url(self) -> str | None:
        """The HTTP endpoint's origin, or None when neither variable is set."""
        if self.endpoint:
            return self.endpoint.rstrip("/")
        if self.http_domain:
            return f"https://{self.http_domain}"
        return None

    @property
    def retry(self) -> RetryPolicy:
        """How publishes are retried (providers/outbound/policy.py)."""
        return RetryPolicy(attempts=self.max_attempts, timeout_seconds=self.timeout_seconds)
