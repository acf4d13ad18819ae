"""Choosing appsync imports its provider and nothing heavy: no boto3 or botocore (credentials
are looked up on the first publish), no httpx (the client is built then too), no other SDK."""

from __future__ import annotations

from tests.import_probe import fresh

PROBE = """
import json, sys
from app.main import create_app

app = create_app()
print(json.dumps({
    "provider": app.state.relay.provider.name,
    "roots": sorted({m.split(".")[0] for m in sys.modules}),
    "modules": sorted(m for m in sys.modules if m.startswith("providers.")),
}))
"""

ENV = {
    "RELAY_ENV": "test",
    "RELAY_JWT_SECRET": "lazy-jwt-secret-0123456789abcdef0123456789",
    "RELAY_API_KEYS": "lazy-api-key-0123456789",
    "RELAY_PROVIDER": "appsync",
    "APPSYNC_HTTP_DOMAIN": "example123.appsync-api.eu-west-1.amazonaws.com",
}


def test_the_appsync_app_imports_no_sdk_and_no_http_client() -> None:
    result = fresh(PROBE, ENV)
    assert result["provider"] == "appsync"
    assert "providers.appsync.provider" in result["modules"]
    roots = result["roots"]
    assert [
        m for m in ("boto3", "botocore", "pusher", "ably", "nacl", "mangum") if m in roots
    ] == []
    assert "providers.appsync.api" not in result["modules"]
    assert "providers.outbound.sigv4" not in result["modules"]
    assert not any(m.startswith("providers.local.") for m in result["modules"])


def test_the_probe_sees_botocore_when_it_is_imported() -> None:
    result = fresh("import botocore.session\n" + PROBE, ENV)
    assert "botocore" in result["roots"]


AUTHORIZER_PROBE = """
import json, sys
from app import lambda_appsync

answer = lambda_appsync.handler(
    {"authorizationToken": "anonymous", "requestContext": {"operation": "EVENT_CONNECT"}}, None
)
print(json.dumps({
    "answer": answer,
    "roots": sorted({m.split(".")[0] for m in sys.modules}),
}))
"""


def test_the_appsync_lambda_answers_without_the_web_app_or_an_sdk() -> None:
    result = fresh(AUTHORIZER_PROBE, ENV)
    assert result["answer"]["isAuthorized"] is True
    roots = result["roots"]
    heavy = ("fastapi", "starlette", "mangum", "httpx", "boto3", "botocore", "pusher", "nacl")
    assert [m for m in heavy if m in roots] == []
