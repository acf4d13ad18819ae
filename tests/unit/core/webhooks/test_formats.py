"""The bodies and signatures, verified by the receivers' own libraries."""

from __future__ import annotations

import time

import orjson
import pusher
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.provider import ChannelEvent
from core.webhooks import formats
from tests.unit.core.webhooks.receiver import APP_ID, APP_KEY, APP_SECRET, WEBHOOK_SECRET

EVENTS = [
    ChannelEvent("channel_occupied", "presence-room", 1),
    ChannelEvent("member_added", "presence-room", 1, user_id="ann"),
    ChannelEvent(
        "client_event",
        "presence-room",
        1,
        user_id="ann",
        event="client-typing",
        data='{"on":true}',
        socket_id="1.2",
    ),
    ChannelEvent("subscription_count", "news", 1, data="3"),
]


def test_the_pusher_sdk_validates_the_pusher_format() -> None:
    body, headers = formats.pusher_request(EVENTS, key=APP_KEY, secret=APP_SECRET, now=time.time())
    client = pusher.Pusher(app_id=APP_ID, key=APP_KEY, secret=APP_SECRET)
    verified = client.validate_webhook(
        headers["X-Pusher-Key"], headers["X-Pusher-Signature"], body.decode()
    )
    assert verified is not None
    assert verified["events"] == [
        {"name": "channel_occupied", "channel": "presence-room"},
        {"name": "member_added", "channel": "presence-room", "user_id": "ann"},
        {
            "name": "client_event",
            "channel": "presence-room",
            "event": "client-typing",
            "data": '{"on":true}',
            "socket_id": "1.2",
            "user_id": "ann",
        },
        {"name": "subscription_count", "channel": "news", "subscription_count": 3},
    ]
    other = pusher.Pusher(app_id=APP_ID, key=APP_KEY, secret="another-secret-0123456789")
    assert other.validate_webhook(APP_KEY, headers["X-Pusher-Signature"], body.decode()) is None


def test_the_pusher_signature_is_known() -> None:
    # HMAC-SHA256 hex of the body under the secret, as Pusher's docs define it
    body, headers = formats.pusher_request(EVENTS[:1], key="k", secret="s", now=1.0)
    assert (
        body == b'{"time_ms":1000,"events":[{"name":"channel_occupied","channel":"presence-room"}]}'
    )
    assert headers["X-Pusher-Signature"] == (
        "e25bc7a5009f9494f6db5aa0692c3c4290c8f531fa4082bd001c1ef3374861c3"
    )


def test_standardwebhooks_verifies_the_standard_format() -> None:
    now = time.time()
    body, headers = formats.standard_request(EVENTS, secret=WEBHOOK_SECRET, now=now)
    payload = Webhook(WEBHOOK_SECRET).verify(body, headers)
    assert payload["type"] == "channel_events"
    assert payload["data"]["events"][1] == {
        "name": "member_added",
        "channel": "presence-room",
        "user_id": "ann",
    }
    # the id is the batch's: the same on a retry, a minute later
    _, again = formats.standard_request(EVENTS, secret=WEBHOOK_SECRET, now=now + 60)
    assert again["webhook-id"] == headers["webhook-id"]
    tampered = orjson.dumps({**payload, "type": "other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(tampered, headers)


def test_a_forwarded_count_without_a_number_names_none() -> None:
    forwarded = ChannelEvent("subscription_count", "news", 1)  # a provider webhook's, normalized
    assert formats.pusher_event(forwarded) == {"name": "subscription_count", "channel": "news"}


def test_a_webhook_secret_of_another_shape_is_refused_at_start_up() -> None:
    from pydantic import ValidationError

    from core.settings import Settings

    assert Settings(webhook_secret=WEBHOOK_SECRET).webhook_secret is not None
    for bad in ("whsec_not base64!", "whsec_c2hvcnQ="):  # not base64; 5 bytes
        with pytest.raises(ValidationError, match="webhook_secret"):
            Settings(webhook_secret=bad)
