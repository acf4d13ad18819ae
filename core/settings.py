"""The relay's own settings, read once from `RELAY_*` environment variables.

Each provider reads its own credentials (`PUSHER_*`, `ABLY_*`, ...) in its own module, so that
choosing one provider never asks for another's secrets.
"""

from __future__ import annotations

import base64
import binascii
import logging
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from core.envsettings import EnvSettings
from core.errors import ConfigurationError

log = logging.getLogger(__name__)

# Development defaults: printed with a warning when used, refused when RELAY_ENV=production.
DEV_APP_ID = "100000"  # digits: the Python SDK (pusher 3.3) takes no other app id
DEV_APP_KEY = "relay-dev-key"
DEV_APP_SECRET = "relay-dev-secret-change-me"  # noqa: S105 - a published development default
DEV_JWT_SECRET = "relay-dev-jwt-secret-change-me-0123456789"  # noqa: S105
DEV_API_KEY = "relay-dev-api-key"

ENV_PREFIX = "RELAY_"
SettingsT = TypeVar("SettingsT", bound=EnvSettings)
# The providers that serve Pusher-protocol sockets under the relay's own app credentials
# (RELAY_APP_*); the others use their own service's credentials and never read these.
APP_CREDENTIAL_PROVIDERS = frozenset({"local", "apigateway"})
# The channel events the outbound webhooks send (core/webhooks), as Pusher names them.
WEBHOOK_EVENTS = (
    "cache_miss",
    "channel_occupied",
    "channel_vacated",
    "client_event",
    "member_added",
    "member_removed",
    "subscription_count",
)
ProviderName = Literal["local", "pusher", "ably", "supabase", "apigateway", "appsync"]
MASTER_KEY_BYTES = 32  # NaCl secretbox keys; Pusher's encryption master key is one


def _master_key_is_32_bytes(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value():
        return None
    try:
        raw = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64") from exc
    if len(raw) != MASTER_KEY_BYTES:
        raise ValueError(f"must decode to {MASTER_KEY_BYTES} bytes")
    return value


# An end-to-end encryption master key, base64 (empty: none). Shared by every settings model
# that takes one (RELAY_ENCRYPTION_MASTER_KEY_BASE64, PUSHER_ENCRYPTION_MASTER_KEY_BASE64).
MasterKeyBase64 = Annotated[SecretStr | None, AfterValidator(_master_key_is_32_bytes)]


def decode_master_key(value: SecretStr | None) -> bytes | None:
    """The raw master key of a validated MasterKeyBase64 value, or None when there is none."""
    return None if value is None else base64.b64decode(value.get_secret_value())


class Settings(EnvSettings):
    """Everything the relay itself is configured with."""

    env_prefix = ENV_PREFIX

    env: Literal["development", "production", "test"] = "development"
    provider: ProviderName = "local"
    # A second provider, with its own credentials (docs/migrating.md): `mirror` sends every
    # publish to both; `failover` sends to it while the first one's circuit breaker is open.
    secondary_provider: ProviderName | None = None
    secondary_mode: Literal["mirror", "failover"] = "failover"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # The local provider's Pusher-style application credentials.
    # As soketi takes them (`app-id`, as Laravel setups use). Pusher's own ids, and the Python
    # SDK, are digits only: the default stays one.
    app_id: str = Field(
        default=DEV_APP_ID,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="1 to 64 letters, digits, '-' and '_'",
    )
    app_key: str = Field(
        default=DEV_APP_KEY,
        min_length=1,
        max_length=64,
        pattern=r"^[\w.-]+$",
        description="letters, digits, '_', '.' and '-'",
    )
    app_secret: SecretStr = SecretStr(DEV_APP_SECRET)
    # End-to-end encrypted channels (private-encrypted-) on local and apigateway: unset, refused.
    encryption_master_key_base64: MasterKeyBase64 = None

    # Identity.
    jwt_secret: SecretStr | None = SecretStr(DEV_JWT_SECRET)
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=10, ge=0, le=300)
    jwt_max_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    api_keys: tuple[SecretStr, ...] = (SecretStr(DEV_API_KEY),)

    # Policy.
    policy_file: Path | None = None

    # Limits that are the relay's own (provider limits live on the provider).
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    max_batch_events: int = Field(default=100, ge=1, le=10_000)
    # Pusher's own limit: 100 channels per trigger (and 10 events per batch_events call).
    max_channels_per_event: int = Field(default=100, ge=1, le=10_000)

    # Local provider.
    activity_timeout_seconds: int = Field(default=120, ge=5, le=3600)
    sse_heartbeat_seconds: float = Field(default=30.0, gt=0, le=300)
    sse_replay_messages: int = Field(default=100, ge=0, le=10_000)
    send_buffer_frames: int = Field(default=1000, ge=10)
    redis_url: str | None = None
    # Several `relay serve` processes or hosts as one: deliveries and channel state through Redis
    # (RELAY_REDIS_URL). memory: each process is its own hub.
    backplane: Literal["memory", "redis"] = "memory"
    # The browser console at /console (app/console): auto serves it when RELAY_ENV=development;
    # on serves it in any environment (its API answers only the backend keys, RELAY_API_KEYS).
    console: Literal["auto", "on", "off"] = "auto"

    # Shared state (rate limits, idempotency): memory for one process, redis or dynamodb for many.
    store: Literal["memory", "redis", "dynamodb"] = "memory"
    dynamodb_table: str | None = None

    # Rate limits: token buckets per caller (API key, user) and per client IP.
    rate_limits: bool = True
    rate_auth_per_second: float = Field(default=10.0, gt=0)
    rate_auth_burst: int = Field(default=20, ge=1)
    rate_publish_per_second: float = Field(default=1000.0, gt=0)
    rate_publish_burst: int = Field(default=2000, ge=1)
    # An IP may carry many callers (offices, mobile carriers): its buckets are this much larger.
    rate_ip_multiplier: float = Field(default=5.0, ge=1.0)
    # Behind a reverse proxy: take the client address from X-Forwarded-For, walking it from the
    # right and skipping `trusted_proxies` (CIDRs), as nginx's realip module does. With the flag on
    # and no CIDRs, the immediate peer is the one trusted proxy. Never read on Lambda (sourceIp).
    trust_proxy_headers: bool = False
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()

    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    idempotency_wait_seconds: float = Field(default=10.0, ge=0)
    # One caller's share of the idempotency records: past it the caller gets 429; nobody else's
    # records are ever evicted to make room. The memory store is also bounded in bytes.
    idempotency_keys_per_caller: int = Field(default=100_000, ge=1)
    memory_store_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    # Channel history the relay keeps in the store where the policy grants `history` (for every
    # provider but Ably, which keeps its own): how long a message is kept, and how many per channel.
    history_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    history_max_messages: int = Field(default=100, ge=1, le=100_000)

    # Connections (relay serve): slow clients, caps, and a bounded drain on shutdown.
    request_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_connections: int = Field(default=10_000, ge=1)  # HTTP, WebSocket and SSE together
    max_connections_per_ip: int = Field(default=200, ge=1)  # WebSocket and SSE per address
    max_subscriptions_per_connection: int = Field(default=100, ge=1, le=100_000)
    max_invalid_frames: int = Field(default=20, ge=1)  # a socket that keeps sending them is closed
    # pusher_internal:subscription_count to a non-presence channel's subscribers when the count
    # changes (throttled to one per 5 s above 100 subscribers). Off by default, as Pusher's app
    # setting is: each change is a broadcast to every subscriber of the channel.
    subscription_count_events: bool = False
    # GET /metrics on relay serve (Prometheus text, a relay API key to read it): app/metrics.py.
    metrics: bool = True
    # host:port of a listener of its own for the metrics, with no key (bind it to a private
    # interface); then the relay's own port serves no /metrics.
    metrics_listen: str | None = None
    drain_seconds: float = Field(default=10.0, ge=0, le=300)

    # Provider circuit breaker: open after this many failures in a row, probe after the cooldown.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=10.0, gt=0)

    # Outbound webhooks (docs/webhooks.md): off while no URL is set.
    webhook_url: tuple[str, ...] = ()
    webhook_format: Literal["pusher", "standard"] = "pusher"
    webhook_secret: SecretStr | None = None  # standard format: whsec_<base64>
    webhook_channels: tuple[str, ...] = ()  # patterns, `*` any run of characters; none: all
    webhook_events: tuple[str, ...] = ()  # kinds; none: all
    # Where events wait: auto picks redis with RELAY_STORE or RELAY_BACKPLANE redis, sqs on
    # Lambda when RELAY_WEBHOOK_SQS_QUEUE is set, memory otherwise.
    webhook_queue: Literal["auto", "memory", "redis", "sqs"] = "auto"
    webhook_sqs_queue: str | None = None  # the SQS queue on Lambda: its name or URL
    webhook_hold_seconds: float = Field(default=3.0, ge=0, le=60)  # member_removed, vacated
    webhook_batch_events: int = Field(default=50, ge=1, le=100)
    webhook_queue_events: int = Field(default=10_000, ge=1, le=1_000_000)  # memory queue bound
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_attempts: int = Field(default=8, ge=1, le=50)

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _split_webhook_urls(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(u.strip() for u in value.split(",") if u.strip())
        if isinstance(value, tuple | list):
            from urllib.parse import urlsplit

            if len(value) > 10:
                raise ValueError("at most 10 URLs")
            for url in value:
                parts = urlsplit(str(url))
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise ValueError("each URL must be http:// or https:// with a host")
                if parts.username or parts.password:
                    raise ValueError("put no credentials in a URL: the body is signed")
        return value

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _webhook_secret_shape(cls, value: object) -> object:
        if isinstance(value, str) and value:
            try:
                raw = base64.b64decode(value.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("must be whsec_ followed by base64") from None
            if len(raw) < 24:
                raise ValueError("must decode to at least 24 bytes")
        return value

    @field_validator("webhook_channels", "webhook_events", mode="before")
    @classmethod
    def _split_webhook_lists(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        if info.field_name == "webhook_events" and isinstance(value, tuple | list):
            unknown = sorted(set(value) - set(WEBHOOK_EVENTS))
            if unknown:
                raise ValueError(f"unknown kinds {unknown}: use {', '.join(WEBHOOK_EVENTS)}")
        return value

    # Browser origins allowed on the auth endpoints and the local WebSocket ("*": any). Unset:
    # any origin in development, none in production (deny by default).
    allowed_origins: tuple[str, ...] = ()

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            origins = tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
            for origin in origins:
                if origin != "*" and not origin.startswith(("http://", "https://")):
                    raise ValueError(f"origins look like https://app.example.com, not {origin!r}")
            return origins
        return value

    @property
    def origins(self) -> tuple[str, ...]:
        """The allowed browser origins, with the environment's default applied."""
        if self.allowed_origins:
            return self.allowed_origins
        return () if self.env == "production" else ("*",)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            proxies = []
            for item in (v.strip() for v in value.split(",")):
                if not item:
                    continue
                try:
                    proxies.append(ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not an address or CIDR") from None
            return tuple(proxies)
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            keys = tuple(k.strip() for k in value.split(",") if k.strip())
            if not keys:
                raise ValueError("at least one key is required")
            if any(len(k) < 16 for k in keys):
                raise ValueError("every key must be at least 16 characters")
            return keys
        return value

    @field_validator("metrics_listen", mode="before")
    @classmethod
    def _host_and_port(cls, value: object) -> object:
        if value == "":
            return None
        if isinstance(value, str):
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError("must be host:port, for example 127.0.0.1:9464")
        return value

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """RELAY_METRICS_LISTEN as (host, port), brackets of an IPv6 host removed."""
        if self.metrics_listen is None:
            return None
        host, _, port = self.metrics_listen.rpartition(":")
        return host.strip("[]"), int(port)

    @field_validator("secondary_provider", mode="before")
    @classmethod
    def _secondary_differs(cls, value: object, info: ValidationInfo) -> object:
        if value == "":
            return None
        if value is not None and value == info.data.get("provider"):
            raise ValueError("must name a provider other than RELAY_PROVIDER")
        return value

    @property
    def providers(self) -> tuple[str, ...]:
        """The providers this relay delivers through: RELAY_PROVIDER, then the secondary."""
        if self.secondary_provider is None:
            return (self.provider,)
        return (self.provider, self.secondary_provider)

    @field_validator("app_secret", mode="before")
    @classmethod
    def _app_secret_length(cls, value: object) -> object:
        if isinstance(value, str) and len(value) < 16:
            raise ValueError("must be at least 16 characters: it signs every subscription")
        return value

    @field_validator("jwt_secret", mode="before")
    @classmethod
    def _secret_length(cls, value: object) -> object:
        if isinstance(value, str) and value == "":
            return None
        if isinstance(value, str) and len(value.encode()) < 32:
            raise ValueError("must be at least 32 bytes (HS256 needs a 256-bit key)")
        return value

    @property
    def encryption_master_key(self) -> bytes | None:
        """The decoded RELAY_ENCRYPTION_MASTER_KEY_BASE64, if encrypted channels are on."""
        return decode_master_key(self.encryption_master_key_base64)

    @cached_property
    def dev_defaults_in_use(self) -> list[str]:
        """Names of the variables the configured provider uses that are still at their published
        development default."""
        used = []
        if APP_CREDENTIAL_PROVIDERS.intersection(self.providers):
            if self.app_id == DEV_APP_ID:
                used.append("RELAY_APP_ID")
            if self.app_key == DEV_APP_KEY:
                used.append("RELAY_APP_KEY")
            if self.app_secret.get_secret_value() == DEV_APP_SECRET:
                used.append("RELAY_APP_SECRET")
        if self.jwt_secret is not None and self.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
            used.append("RELAY_JWT_SECRET")
        if any(k.get_secret_value() == DEV_API_KEY for k in self.api_keys):
            used.append("RELAY_API_KEYS")
        return used


def read_env(cls: type[SettingsT]) -> SettingsT:
    """Build a settings class from the environment; every problem becomes a line naming its
    variable (and never its value, which may be a secret)."""
    settings, problems = _read_partly(cls)
    if problems or settings is None:
        raise ConfigurationError(*problems)
    return settings


def _read_partly(cls: type[SettingsT]) -> tuple[SettingsT | None, list[str]]:
    """The settings with each variable that failed left at its default (None when one without a
    default failed), and the problems, so that later checks can still run."""
    try:
        return cls(), []
    except ValidationError as exc:
        problems = cls.problems(exc)
        failed = {str(details["loc"][0]) for details in exc.errors() if details["loc"]}
    defaults: dict[str, object] = {}
    for name, info in cls.model_fields.items():
        if failed & {name, *cls.aliases(info.validation_alias)}:
            if info.is_required():
                return None, problems
            defaults[name] = info.get_default(call_default_factory=True)
    try:
        return cls(**defaults), problems  # keyword arguments win over the environment
    except ValidationError:
        return None, problems


def load_settings() -> Settings:
    """Read the relay's settings and check the combinations a single field cannot; every
    problem is reported at once."""
    settings, problems = _read_partly(Settings)
    if settings is not None:
        named = {name for p in problems for name in p.partition(": ")[0].split(", ")}
        if settings.jwt_secret is None and settings.jwks_url is None:
            problems.append("RELAY_JWT_SECRET: set it, or RELAY_JWKS_URL, to verify users")
        if settings.backplane == "redis" and not settings.redis_url:
            problems.append("RELAY_REDIS_URL: required when RELAY_BACKPLANE=redis")
        standard = settings.webhook_url and settings.webhook_format == "standard"
        if standard and settings.webhook_secret is None:
            problems.append("RELAY_WEBHOOK_SECRET: required when RELAY_WEBHOOK_FORMAT=standard")
        if settings.webhook_queue == "sqs" and not settings.webhook_sqs_queue:
            problems.append("RELAY_WEBHOOK_SQS_QUEUE: required when RELAY_WEBHOOK_QUEUE=sqs")
        refused = [v for v in settings.dev_defaults_in_use if v not in named]
        if settings.env == "production" and refused:
            problems.append(
                f"{', '.join(refused)}: set your own; the development defaults are refused "
                "when RELAY_ENV=production"
            )
    if problems or settings is None:
        raise ConfigurationError(*problems)
    return settings


def warn_about_dev_defaults(settings: Settings) -> None:
    """Log, once per process that serves, which development defaults are in use."""
    if settings.dev_defaults_in_use:
        log.warning(
            "using development defaults for %s: set your own before exposing the relay",
            ", ".join(settings.dev_defaults_in_use),
        )
