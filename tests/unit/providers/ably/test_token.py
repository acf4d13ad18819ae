"""TokenRequest signing: known answers, and the official `ably` SDK as the oracle."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from ably import AblyRest  # type: ignore[import-untyped]  # the SDK ships no types

from core.policy import Policy
from core.principal import ANONYMOUS, user
from core.settings import read_env
from providers.ably.provider import AblyProvider
from providers.ably.settings import AblySettings
from providers.ably.token import new_nonce, sign_token_request, token_mac

KEY_NAME = "appId.keyId"
SECRET = "s3cr3t-Value/with+base64="
KEY = f"{KEY_NAME}:{SECRET}"
TIMESTAMP = 1_700_000_000_000
NONCE = "0123456789abcdef0123"
CAPABILITY = {"news": ["subscribe"], "private-user-alice": ["history", "subscribe"]}
CAPABILITY_TEXT = json.dumps(CAPABILITY, sort_keys=True)


async def _sdk(params: dict[str, Any]) -> dict[str, Any]:
    """The SDK's TokenRequest with time and nonce fixed through its token params."""
    rest = AblyRest(key=KEY)
    try:
        request = await rest.auth.create_token_request(
            {"timestamp": TIMESTAMP, "nonce": NONCE, **params}
        )
    finally:
        await rest.close()
    return {k: v for k, v in request.to_dict().items() if v is not None}


def test_known_answer_vector() -> None:
    # The constant was computed with `openssl dgst -sha256 -hmac` over the spec's string-to-sign.
    text = f"{KEY_NAME}\n3600000\n{CAPABILITY_TEXT}\nalice\n{TIMESTAMP}\n{NONCE}\n"
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).digest()
    ).decode()
    got = token_mac(
        SECRET,
        key_name=KEY_NAME,
        ttl_ms=3_600_000,
        capability=CAPABILITY_TEXT,
        client_id="alice",
        timestamp_ms=TIMESTAMP,
        nonce=NONCE,
    )
    assert got == expected == "6W7TFgu7q4X1ghXulnBINig4Q+mxl7Ee0xjD1E7CijY="


@pytest.mark.parametrize(
    ("client_id", "ttl_ms", "capability"),
    [
        ("alice", 3_600_000, CAPABILITY),
        (None, 60_000, {"news": ["history", "subscribe"]}),
        ("ünïcødé-user", 86_400_000, {"presence-room": ["presence", "subscribe"]}),
        ("42", 120_000, {"a": ["publish"], "b": ["history"], "c": ["subscribe"]}),
    ],
)
async def test_token_request_equals_the_sdks(
    client_id: str | None, ttl_ms: int, capability: dict[str, list[str]]
) -> None:
    params: dict[str, Any] = {"ttl": ttl_ms, "capability": capability}
    if client_id is not None:
        params["client_id"] = client_id
    expected = await _sdk(params)
    mine = sign_token_request(
        KEY_NAME,
        SECRET,
        ttl_ms=ttl_ms,
        capability=json.dumps(capability, sort_keys=True),
        client_id=client_id,
        timestamp_ms=TIMESTAMP,
        nonce=NONCE,
    )
    assert mine.as_dict() == expected
    assert ("clientId" in mine.as_dict()) is (client_id is not None)


async def test_provider_token_request_equals_the_sdks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLY_API_KEY", KEY)
    provider = AblyProvider(
        read_env(AblySettings), clock=lambda: TIMESTAMP / 1000, nonce=lambda: NONCE
    )
    got = await provider.issue_token(user("alice"), Policy.default())
    capability = {"private-user-alice": ["history", "subscribe"]}
    expected = await _sdk({"ttl": 3_600_000, "capability": capability, "client_id": "alice"})
    assert got == expected
    assert json.loads(got["capability"]) == capability


async def test_anonymous_token_request_has_no_client_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLY_API_KEY", KEY)
    provider = AblyProvider(
        read_env(AblySettings), clock=lambda: TIMESTAMP / 1000, nonce=lambda: NONCE
    )
    got = await provider.issue_token(ANONYMOUS, Policy.default(), channels=["news"])
    expected = await _sdk({"ttl": 3_600_000, "capability": {"news": ["history", "subscribe"]}})
    assert got == expected
    assert "clientId" not in got


@pytest.mark.parametrize(
    "field", ["key_name", "ttl_ms", "capability", "client_id", "timestamp_ms", "nonce"]
)
def test_every_field_is_covered_by_the_mac(field: str) -> None:
    fields: dict[str, Any] = {
        "key_name": KEY_NAME,
        "ttl_ms": 3_600_000,
        "capability": CAPABILITY_TEXT,
        "client_id": "alice",
        "timestamp_ms": TIMESTAMP,
        "nonce": NONCE,
    }
    original = token_mac(SECRET, **fields)
    changed = {**fields, field: fields[field] + (1 if isinstance(fields[field], int) else "x")}
    assert token_mac(SECRET, **changed) != original
    assert token_mac(SECRET + "x", **fields) != original


def test_nonces_are_long_and_fresh() -> None:
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(len(n) >= 16 for n in nonces)
