"""Choosing the pusher provider imports it, and nothing heavy it does not need; choosing local
imports neither the pusher provider nor NaCl. Each check runs in a fresh interpreter."""

from __future__ import annotations

import base64

from tests.import_probe import fresh

NOT_FOR_PUSHER = ("pusher", "ably", "boto3", "botocore", "redis", "mangum")

PROBE = """
import json, sys
from app.main import create_app

app = create_app()
roots = {m.split(".")[0] for m in sys.modules}
print(json.dumps({
    "provider": app.state.relay.provider.name,
    "provider_class": type(app.state.relay.provider).__module__,
    "roots": sorted(roots),
    "modules": sorted(m for m in sys.modules if m.startswith("providers.")),
}))
"""

RELAY_VARS = {
    "RELAY_ENV": "test",
    "RELAY_JWT_SECRET": "lazy-jwt-secret-0123456789abcdef0123456789",
    "RELAY_API_KEYS": "lazy-api-key-0123456789",
    "RELAY_APP_ID": "4242",
    "RELAY_APP_KEY": "lazy-key",
    "RELAY_APP_SECRET": "lazy-app-secret-0123456789",
}
PUSHER_VARS = {
    "PUSHER_APP_ID": "4242",
    "PUSHER_KEY": "lazy-key",
    "PUSHER_SECRET": "lazy-pusher-secret-0123456789",
    "PUSHER_HOST": "127.0.0.1",
    "PUSHER_PORT": "6001",
    "PUSHER_USE_TLS": "false",
    "PUSHER_ENCRYPTION_MASTER_KEY_BASE64": base64.b64encode(bytes(32)).decode(),
}


def _probe(first: str = "", **env: str) -> dict[str, object]:
    result: dict[str, object] = fresh(first + PROBE, {**RELAY_VARS, **env})
    return result


def test_pusher_app_imports_the_provider_but_no_sdk() -> None:
    result = _probe(RELAY_PROVIDER="pusher", **PUSHER_VARS)
    assert result["provider"] == "pusher"
    assert result["provider_class"] == "providers.pusher.provider"
    modules = result["modules"]
    assert isinstance(modules, list)
    assert "providers.pusher.provider" in modules
    roots = result["roots"]
    assert isinstance(roots, list)
    assert [m for m in NOT_FOR_PUSHER if m in roots] == []
    # The HTTP client is built on the first call to Pusher: signing subscriptions needs none.
    assert "httpx" not in roots
    assert "providers.pusher.api" not in modules
    # Nor the local provider's socket machinery.
    assert "providers.local.provider" not in modules


def test_local_app_imports_neither_the_pusher_provider_nor_nacl() -> None:
    result = _probe(RELAY_PROVIDER="local", **PUSHER_VARS)
    assert result["provider"] == "local"
    modules = result["modules"]
    roots = result["roots"]
    assert isinstance(modules, list)
    assert isinstance(roots, list)
    assert not any(m == "providers.pusher" or m.startswith("providers.pusher.") for m in modules)
    assert "nacl" not in roots
    assert "pusher" not in roots


def test_the_probe_sees_what_is_imported() -> None:
    # The check can fail: importing the SDK first makes it show up.
    result = _probe("import pusher, nacl.secret\n", RELAY_PROVIDER="local")
    roots = result["roots"]
    assert isinstance(roots, list)
    assert "pusher" in roots
    assert "nacl" in roots
