"""Ably webhooks: X-Ably-Signature verification, and lifecycle and presence normalization."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from app.main import create_app
from app.relay import Relay
from core.errors import BadRequest, InvalidSignature
from providers.ably import webhooks
from providers.ably.provider import AblyProvider
from providers.ably.settings import AblySettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from core.settings import Settings

KEY_NAME = "appId.keyId"
SECRET = "webhook-key-secret"

LIFECYCLE = {
    "items": [
        {
            "webhookId": "ABcDEf",
            "source": "channel.lifecycle",
            "timestamp": 1562124922426,
            "serial": "a7bcdEFghIjklm123456789:4",
            "name": "channel.opened",
            "data": {"channelId": "chat-channel-5", "name": "chat-channel-5", "status": {}},
        },
        {
            "webhookId": "ABcDEf",
            "source": "channel.lifecycle",
            "timestamp": 1562124922500,
            "name": "channel.closed",
            "data": {"channelId": "chat-channel-5", "name": "chat-channel-5"},
        },
    ]
}
PRESENCE = {
    "items": [
        {
            "webhookId": "ABcDEf",
            "source": "channel.presence",
            "timestamp": 1562124922426,
            "name": "presence.message",
            "data": {
                "channelId": "presence-lobby",
                "site": "eu-west-1-A",
                "presence": [
                    {"id": "a:1:0", "clientId": "bob", "timestamp": 1, "action": 2},
                    {"id": "a:1:1", "clientId": "bob", "timestamp": 2, "action": 4},
                    {"id": "a:1:2", "clientId": "bob", "timestamp": 3, "action": 3},
                    {"id": "a:1:3", "clientId": "ann", "action": 1},
                ],
            },
        },
        {"source": "channel.message", "name": "channel.message", "timestamp": 5, "data": {}},
    ]
}


def _body(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)


def _signed(body: bytes, secret: str = SECRET, key: str = KEY_NAME) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"x-ably-key": key, "x-ably-signature": base64.b64encode(digest).decode()}


def _verify(headers: dict[str, str], body: bytes, *, allow_unsigned: bool = False) -> None:
    webhooks.verify(KEY_NAME, SECRET, headers, body, allow_unsigned=allow_unsigned)


def test_a_signed_body_verifies_with_the_key_name_or_the_key_id() -> None:
    body = _body(LIFECYCLE)
    _verify(_signed(body), body)
    _verify(_signed(body, key="keyId"), body)
    _verify({"x-ably-signature": _signed(body)["x-ably-signature"]}, body)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        (_signed(b"other"), "does not match"),
        (_signed(_body(LIFECYCLE), secret="wrong"), "does not match"),
        (_signed(_body(LIFECYCLE), key="appId.otherKey"), "another key"),
    ],
)
def test_bad_or_missing_signatures_are_refused(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidSignature, match=reason) as caught:
        _verify(headers, _body(LIFECYCLE))
    assert SECRET not in str(caught.value)


def test_unsigned_passes_only_when_allowed_and_a_bad_signature_never_does() -> None:
    body = _body(LIFECYCLE)
    _verify({}, body, allow_unsigned=True)
    with pytest.raises(InvalidSignature):
        _verify(_signed(body, secret="wrong"), body, allow_unsigned=True)


def test_lifecycle_events_become_occupied_and_vacated() -> None:
    events = webhooks.normalize(_body(LIFECYCLE))
    assert [(e.kind, e.channel, e.time_ms) for e in events] == [
        ("channel_occupied", "chat-channel-5", 1562124922426),
        ("channel_vacated", "chat-channel-5", 1562124922500),
    ]


def test_presence_enter_and_leave_become_member_events_and_the_rest_is_skipped() -> None:
    events = webhooks.normalize(_body(PRESENCE))
    assert [(e.kind, e.channel, e.user_id, e.time_ms) for e in events] == [
        ("member_added", "presence-lobby", "bob", 1),
        ("member_removed", "presence-lobby", "bob", 3),
    ]


def test_an_enveloped_single_presence_request_is_normalized() -> None:
    single = {
        "source": "channel.presence",
        "appId": "aBCdEf",
        "channel": "presence-lobby",
        "site": "eu-central-1-A",
        "timestamp": 1582270137276,
        "presence": [{"clientId": "bob", "connectionId": "Ab1", "action": "enter"}],
    }
    events = webhooks.normalize(_body(single))
    assert [(e.kind, e.user_id, e.time_ms) for e in events] == [
        ("member_added", "bob", 1582270137276)
    ]


def test_the_references_enveloped_presence_example_is_normalized() -> None:
    example = {
        "source": "channel.message",
        "appId": "aBCdEf",
        "channel": "channel-name",
        "site": "eu-central-1-A",
        "ruleId": "1-a2Bc",
        "presence": [
            {
                "id": "abCdEFgHIJ:1:0",
                "clientId": "bob",
                "connectionId": "Ab1CDE2FGh",
                "timestamp": 1582270137276,
                "data": "some data in the presence object",
                "action": 4,
            },
            {"clientId": "bob", "connectionId": "Ab1", "timestamp": 1582270137999, "action": 3},
        ],
    }
    events = webhooks.normalize(_body(example))
    assert [(e.kind, e.channel, e.user_id) for e in events] == [
        ("member_removed", "channel-name", "bob")
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"items": {}}',
        b'{"items": [{"source": "channel.lifecycle", "name": "channel.opened"}]}',
        b'{"items": [{"source": "channel.lifecycle", "name": "channel.opened", "data": {}}]}',
        b'{"items": [{"source": "channel.presence", "timestamp": 1, "data": {"channelId": "c"}}]}',
        b'{"source": "channel.presence", "channel": "c", "presence": [{"action": 2}]}',
        b'{"source": "channel.presence", "channel": "c", "presence": [{"action": 2, '
        b'"clientId": "x"}]}',
    ],
)
def test_malformed_bodies_are_bad_requests(body: bytes) -> None:
    with pytest.raises(BadRequest):
        webhooks.normalize(body)


# -- through the relay's route -----------------------------------------------------------------


@pytest.fixture
async def ably_http(relay_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    settings = AblySettings(
        api_key=SecretStr("appId.mainKey:main-secret"),
        webhook_key=SecretStr(f"{KEY_NAME}:{SECRET}"),
    )
    # The sample events are stamped a few milliseconds after the epoch: the clock agrees.
    provider = AblyProvider(settings, clock=lambda: 0.004)
    app = create_app(relay=Relay.build(relay_settings, provider=provider))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        yield client


async def test_the_route_verifies_then_answers_normalized_events(
    ably_http: httpx.AsyncClient,
) -> None:
    body = _body(PRESENCE)
    response = await ably_http.post("/v1/webhooks/ably", content=body, headers=_signed(body))
    assert response.status_code == 200, response.text
    assert response.json()["events"] == [
        {
            "kind": "member_added",
            "channel": "presence-lobby",
            "time_ms": 1,
            "user_id": "bob",
            "event": None,
            "data": None,
            "socket_id": None,
        },
        {
            "kind": "member_removed",
            "channel": "presence-lobby",
            "time_ms": 3,
            "user_id": "bob",
            "event": None,
            "data": None,
            "socket_id": None,
        },
    ]


async def test_the_route_refuses_an_unsigned_webhook(ably_http: httpx.AsyncClient) -> None:
    response = await ably_http.post("/v1/webhooks/ably", content=_body(LIFECYCLE))
    assert response.status_code == 401
    assert response.json()["type"] == "urn:realtime-relay:problem:invalid-signature"


async def test_the_route_refuses_a_body_signed_with_the_api_key_instead(
    ably_http: httpx.AsyncClient,
) -> None:
    body = _body(LIFECYCLE)
    headers = _signed(body, secret="main-secret", key="appId.mainKey")
    response = await ably_http.post("/v1/webhooks/ably", content=body, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("offset", "fresh"), [(0, True), (599, True), (-599, True), (601, False), (-601, False)]
)
def test_a_body_whose_newest_event_is_too_far_off_is_refused(offset: int, fresh: bool) -> None:
    events = webhooks.normalize(_body(PRESENCE))  # newest event at 3 ms
    now = 0.003 + offset
    if fresh:
        webhooks.check_fresh(events, now=now)
    else:
        with pytest.raises(InvalidSignature, match="600 s"):
            webhooks.check_fresh(events, now=now)
