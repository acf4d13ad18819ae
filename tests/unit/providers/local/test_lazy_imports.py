"""Choosing the local provider imports no other provider's SDK (cold starts stay light)."""

from __future__ import annotations

from tests.import_probe import fresh

HEAVY = ("pusher", "ably", "supabase", "realtime", "boto3", "botocore", "redis", "nacl", "mangum")

PROGRAM = f"""
import json, sys
from app.main import create_app
from core.settings import Settings

app = create_app(Settings(
    env="test",
    provider="local",
    app_id="4242",
    app_key="unit-key",
    app_secret="unit-app-secret-0123456789",
    jwt_secret="unit-jwt-secret-0123456789abcdef0123456789",
    api_keys="unit-api-key-0123456789",
))
assert app.state.relay.provider.name == "local"
heavy = {HEAVY!r}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
print(json.dumps({{"loaded": loaded, "routes": len(app.routes)}}))
"""


def _run(program: str) -> dict[str, object]:
    result: dict[str, object] = fresh(program)
    return result


def test_local_app_imports_no_provider_sdk() -> None:
    result = _run(PROGRAM)
    assert result["loaded"] == []
    assert isinstance(result["routes"], int)
    assert result["routes"] > 5


def test_the_check_would_see_an_sdk_that_is_imported() -> None:
    # The probe itself works: SDKs that are imported do show up.
    result = _run("import pusher, redis\n" + PROGRAM)
    loaded = result["loaded"]
    assert isinstance(loaded, list)
    assert "pusher" in loaded
    assert "redis" in loaded
