"""Provider names mapped to their classes, imported only when chosen (cold start stays light)."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from core.errors import ConfigurationError
from core.settings import Settings, load_settings, read_env

if TYPE_CHECKING:
    from core.provider import Provider

PROVIDERS: dict[str, str] = {
    "local": "providers.local.provider:LocalProvider",
    "pusher": "providers.pusher.provider:PusherProvider",
    "ably": "providers.ably.provider:AblyProvider",
    "supabase": "providers.supabase.provider:SupabaseProvider",
    "apigateway": "providers.apigateway.provider:ApiGatewayProvider",
    "appsync": "providers.appsync.provider:AppSyncProvider",
}
# The settings each provider reads besides the relay's own (`from_settings` reads them again).
PROVIDER_SETTINGS: dict[str, str] = {
    "pusher": "providers.pusher.settings:PusherSettings",
    "ably": "providers.ably.settings:AblySettings",
    "supabase": "providers.supabase.settings:SupabaseSettings",
    "apigateway": "providers.apigateway.settings:ApiGatewaySettings",
    "appsync": "providers.appsync.settings:AppSyncSettings",
}


def provider_class(name: str) -> type[Provider]:
    """Import and return the class registered under `name`."""
    try:
        target = PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigurationError(
            f"RELAY_PROVIDER: {name!r} is not available (have: {known})"
        ) from None
    cls: type[Provider] = _load(name, target)
    return cls


def _load(name: str, target: str) -> Any:
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("app", "core", "providers"):
            # The relay's own module is absent: an incomplete deployment package, not an extra.
            raise ConfigurationError(
                f"RELAY_PROVIDER: {name!r}: the relay's module {exc.name} is missing from "
                "this installation (check the package's file list)"
            ) from exc
        raise ConfigurationError(
            f"RELAY_PROVIDER: {name!r} needs its extra: "
            f"pip install 'realtime-relay[{name}]' (missing {exc.name})"
        ) from exc
    return getattr(module, class_name)


def load_settings_with_provider() -> Settings:
    """The relay's settings, and the configured provider's read as well, so that one run reports
    every problem of both (its missing credentials all named at once)."""
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        problems.extend(exc.problems)
    if settings is not None:
        names: tuple[object, ...] = settings.providers
    else:
        environ = Settings.from_environ(os.environ)
        names = (environ.get("provider"), environ.get("secondary_provider"))
    for name in names:
        target = PROVIDER_SETTINGS.get(str(name or "local"))
        if target is not None:
            try:
                read_env(_load(str(name), target))
            except ConfigurationError as exc:
                problems.extend(exc.problems)
    if problems or settings is None:
        raise ConfigurationError(*problems)
    return settings


def create_provider(settings: Settings) -> Provider:
    """Build the configured provider from the settings (each reads its own credentials); with
    RELAY_SECONDARY_PROVIDER, both as one pair (providers/pair.py)."""
    primary = provider_class(settings.provider).from_settings(settings)
    if settings.secondary_provider is None:
        return primary
    from providers.pair import ProviderPair

    return ProviderPair(
        primary,
        provider_class(settings.secondary_provider).from_settings(settings),
        mode=settings.secondary_mode,
        failures=settings.breaker_failures,
        cooldown=settings.breaker_cooldown_seconds,
    )
