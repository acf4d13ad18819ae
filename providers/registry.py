"""Provider names mapped to their classes, imported only when chosen (cold start stays light)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from core.errors import ConfigurationError

if TYPE_CHECKING:
    from core.provider import Provider
    from core.settings import Settings

PROVIDERS: dict[str, str] = {
    "local": "providers.local.provider:LocalProvider",
    "pusher": "providers.pusher.provider:PusherProvider",
    "ably": "providers.ably.provider:AblyProvider",
    "supabase": "providers.supabase.provider:SupabaseProvider",
    "apigateway": "providers.apigateway.provider:ApiGatewayProvider",
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
    cls: type[Provider] = getattr(module, class_name)
    return cls


def create_provider(settings: Settings) -> Provider:
    """Build the configured provider from the settings (each reads its own credentials)."""
    return provider_class(settings.provider).from_settings(settings)
