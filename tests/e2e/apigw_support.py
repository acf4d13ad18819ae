"""Shared pieces of the apigateway provider's tests: AWS under moto, its tables deployed from
infra/ through CloudFormation, a relay wired to the provider, and API Gateway event samples."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import orjson

from app.relay import Relay
from core import aws
from core.policy import Policy
from core.settings import Settings
from core.tokens import mint_dev_token
from infra.offline import deploy_tables
from providers.apigateway.provider import ApiGatewayProvider
from providers.apigateway.settings import ApiGatewaySettings
from providers.pusherproto import signing

if TYPE_CHECKING:
    import pytest

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
PREFIX = "relay-unit"
APP_KEY = "unit-key"
APP_SECRET = "unit-app-secret-0123456789"
JWT_SECRET = "unit-jwt-secret-0123456789abcdef0123456789"
API_KEY = "unit-api-key-0123456789"
CHAT_POLICY = """
[[rule]]
pattern = "private-user-{id}"
subscribe = ["user:{id}"]
publish = ["backend"]

[[rule]]
pattern = "presence-chat-{room}"
subscribe = ["user"]
publish = ["backend"]
client_events = ["user"]
presence_info = ["name"]

[[rule]]
pattern = "private-{name}"
subscribe = ["user"]
publish = ["backend"]
client_events = ["user"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
publish = ["backend"]
"""


def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials in one region, no endpoint overrides, no cached clients."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "APIGW_", "RELAY_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    aws.client.cache_clear()


def deploy_infra(prefix: str = PREFIX) -> dict[str, str]:
    """Create the stacks of infra/*.yaml in the mocked account, as `make offline` does in moto;
    return their outputs."""
    return deploy_tables(boto3.client("cloudformation"), prefix)


def relay_settings(**overrides: Any) -> Settings:
    """The relay's settings for these tests (test environment, fixed secrets)."""
    values: dict[str, Any] = {
        "env": "test",
        "provider": "apigateway",
        "app_id": "4242",
        "app_key": APP_KEY,
        "app_secret": APP_SECRET,
        "jwt_secret": JWT_SECRET,
        "api_keys": API_KEY,
        "allowed_origins": "https://app.example.com",
        **overrides,
    }
    return Settings(**values)


def build_relay(
    endpoint: str, *, policy: Policy | None = None, functions: Any = None, **gateway: Any
) -> tuple[Relay, ApiGatewayProvider]:
    """A relay on the apigateway provider, its management API at `endpoint` (and its Lambda
    client `functions`, when given)."""
    settings = relay_settings()
    options: dict[str, Any] = {
        "table_prefix": PREFIX,
        "endpoint": endpoint,
        "handshake_function": "relay-unit-handshake",
        **gateway,
    }
    provider = ApiGatewayProvider(settings, ApiGatewaySettings(**options), functions=functions)
    relay = Relay.build(settings, provider=provider, policy=policy)
    return relay, provider


def chat_policy(tmp_path: Path) -> Policy:
    """A policy under which users may send client events on presence-chat- and private-."""
    path = tmp_path / "policy.toml"
    path.write_text(CHAT_POLICY)
    return Policy.from_file(path)


def token(user_id: str, name: str | None = None, *, ttl: int = 3600) -> str:
    """A JWT these relays accept."""
    return mint_dev_token(relay_settings(), user_id=user_id, name=name, ttl=ttl)


def event(name: str, **changes: Any) -> dict[str, Any]:
    """An event sample from tests/events/, with top-level keys replaced."""
    sample: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    found = copy.deepcopy(sample)
    found.update(changes)
    return found


def connect_event(
    connection_id: str, user_token: str | None, *, origin: str | None = "https://app.example.com"
) -> dict[str, Any]:
    """$connect as pusher-js makes it with wsPath `/prod?token=...&path=`."""
    found = event("apigw_connect")
    params = dict(found["queryStringParameters"])
    if user_token is None:
        del params["token"]
    else:
        params["token"] = user_token
    found["queryStringParameters"] = params
    found["requestContext"]["connectionId"] = connection_id
    if origin is None:
        del found["headers"]["Origin"]
    else:
        found["headers"]["Origin"] = origin
    return found


def message_event(connection_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    """$default carrying one client frame."""
    found = event("apigw_default", body=orjson.dumps(frame).decode())
    found["requestContext"]["connectionId"] = connection_id
    return found


def disconnect_event(connection_id: str) -> dict[str, Any]:
    """$disconnect of one connection."""
    found = event("apigw_disconnect")
    found["requestContext"]["connectionId"] = connection_id
    return found


def subscribe_frame(
    channel: str, socket_id: str | None = None, presence: dict[str, Any] | None = None
) -> dict[str, Any]:
    """pusher:subscribe, signed for `socket_id` as /auth/channel would sign it."""
    data: dict[str, Any] = {"channel": channel}
    if socket_id is not None:
        channel_data = None if presence is None else orjson.dumps(presence).decode()
        data["auth"] = signing.channel_auth(
            APP_KEY, APP_SECRET, socket_id=socket_id, channel=channel, channel_data=channel_data
        )
        if channel_data is not None:
            data["channel_data"] = channel_data
    return {"event": "pusher:subscribe", "data": data}


class FakeLambda:
    """Stands in for the Lambda client: records asynchronous invokes, can fail them."""

    def __init__(self, *, fail: bool = False) -> None:
        self.invokes: list[dict[str, Any]] = []
        self.fail = fail

    def invoke(self, **params: Any) -> dict[str, Any]:
        """Record the invoke (payload decoded)."""
        if self.fail:
            raise RuntimeError("invoke refused")
        self.invokes.append({**params, "Payload": orjson.loads(params["Payload"])})
        return {"StatusCode": 202}
