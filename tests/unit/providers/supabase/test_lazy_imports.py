"""Choosing the supabase provider imports no other provider's SDK, nor the `realtime` SDK, nor
httpx before the first publish."""

from __future__ import annotations

from tests.import_probe import fresh

HEAVY = (
    "pusher", "nacl", "ably", "boto3", "botocore", "redis", "mangum",
    "realtime", "supabase", "websockets", "psycopg",
    "httpx",  # the broadcast client is built on the first publish
    "jwt", "cryptography",  # the first token is signed on the first token request
)  # fmt: skip

PROGRAM = f"""
import json, sys
from app.main import create_app
from core.settings import Settings

app = create_app(Settings(
    env="test",
    provider="supabase",
    jwt_secret="lazy-jwt-secret-0123456789abcdef0123456789",
    api_keys="lazy-api-key-0123456789",
    app_secret="lazy-app-secret-0123456789",
))
provider = app.state.relay.provider
heavy = {HEAVY!r}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
print(json.dumps({{"provider": type(provider).__name__, "loaded": loaded}}))
"""


def _run(program: str) -> dict[str, object]:
    env = {
        "SUPABASE_URL": "https://ref.supabase.co",
        "SUPABASE_SERVICE_ROLE_KEY": "lazy-service-role-key",
        "SUPABASE_JWT_SECRET": "lazy-supabase-jwt-secret-0123456789abcdef",
    }
    result: dict[str, object] = fresh(program, env)
    return result


def test_the_supabase_app_imports_no_sdk() -> None:
    result = _run(PROGRAM)
    assert result["provider"] == "SupabaseProvider"
    assert result["loaded"] == []


def test_the_probe_sees_an_sdk_that_is_imported() -> None:
    # websockets comes with uvicorn[standard], so the probe needs no optional extra to run.
    loaded = _run("import websockets\n" + PROGRAM)["loaded"]
    assert isinstance(loaded, list)
    assert "websockets" in loaded
