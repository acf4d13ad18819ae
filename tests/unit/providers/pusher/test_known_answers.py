"""The pusher provider's signatures and webhook handling, cross-checked against the official SDK.

The `pusher` SDK is the oracle: what it signs, derives or encrypts for the same input must be what
the relay produces, byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from typing import Any

import nacl.secret
import orjson
import pusher
import pusher.crypto
import pusher.signature
import pytest

from core.errors import BadRequest, InvalidSignature
from core.provider import ChannelEvent, PresenceData
from providers.pusher import webhooks
from providers.pusher.provider import PusherProvider
from providers.pusher.settings import PusherSettings
from providers.pusherproto import encryption as crypto

APP_ID = "4242"
KEY = "kat-key"
SECRET = "kat-secret-0123456789abcdef"
MASTER_KEY = bytes(range(32))
MASTER_KEY_BASE64 = base64.b64encode(MASTER_KEY).decode()
SOCKET = "123456.7890123"
NONCE = bytes(range(24))

# Pusher's documented example (pusher.com/docs/channels/library_auth_reference/auth-signatures).
DOC_KEY = "278d425bdf160c739803"
DOC_SECRET = "7ad3773142a6692b25b8"
DOC_PRIVATE_AUTH = (
    "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
)


class CompactUtf8(json.JSONEncoder):
    """Have the SDK serialize as the relay does: compact separators, UTF-8 kept (no \\u)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["separators"] = (",", ":")
        kwargs["ensure_ascii"] = False
        super().__init__(**kwargs)


@pytest.fixture(autouse=True)
def _no_pusher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PUSHER_"):
            monkeypatch.delenv(name)


def provider(
    key: str = KEY, secret: str = SECRET, master: str | None = MASTER_KEY_BASE64
) -> PusherProvider:
    values: dict[str, Any] = {
        "app_id": APP_ID,
        "key": key,
        "secret": secret,
        "encryption_master_key_base64": master,
    }
    return PusherProvider(PusherSettings(**values))


def sdk(key: str = KEY, secret: str = SECRET) -> Any:
    return pusher.Pusher(
        app_id=APP_ID,
        key=key,
        secret=secret,
        encryption_master_key_base64=MASTER_KEY_BASE64,
        json_encoder=CompactUtf8,
    )


# -- encrypted channels ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "channel", ["private-encrypted-a", "private-encrypted-room-42", "private-encrypted-x=y@z,.;_"]
)
@pytest.mark.parametrize("master", [MASTER_KEY, bytes(32), hashlib.sha256(b"m").digest()])
def test_shared_secret_matches_the_sdk(channel: str, master: bytes) -> None:
    mine = crypto.shared_secret(channel, master)
    assert mine == pusher.crypto.generate_shared_secret(channel.encode(), master)
    assert len(mine) == nacl.secret.SecretBox.KEY_SIZE


def test_shared_secret_differs_per_channel_and_master_key() -> None:
    a = crypto.shared_secret("private-encrypted-a", MASTER_KEY)
    assert a != crypto.shared_secret("private-encrypted-b", MASTER_KEY)
    assert a != crypto.shared_secret("private-encrypted-a", bytes(32))


@pytest.mark.asyncio
async def test_encrypted_channel_answer_matches_the_sdk() -> None:
    channel = "private-encrypted-vault"
    relay = provider()
    try:
        answer = relay.authorize_channel(socket_id=SOCKET, channel=channel, presence=None)
    finally:
        await relay.aclose()
    expected = sdk().authenticate(channel=channel, socket_id=SOCKET)
    assert answer["auth"] == expected["auth"]
    assert answer["shared_secret"] == expected["shared_secret"].decode()
    assert base64.b64decode(answer["shared_secret"]) == crypto.shared_secret(channel, MASTER_KEY)
    assert set(answer) == {"auth", "shared_secret"}


@pytest.mark.asyncio
async def test_no_shared_secret_without_a_master_key_or_for_other_channels() -> None:
    without = provider(master=None)
    with_key = provider()
    try:
        assert not without.limits.supports_encrypted_channels
        assert with_key.limits.supports_encrypted_channels
        plain = with_key.authorize_channel(socket_id=SOCKET, channel="private-x", presence=None)
        assert set(plain) == {"auth"}
    finally:
        await without.aclose()
        await with_key.aclose()


@pytest.mark.parametrize("data", ["hello", '{"a":1}', "naïve ☃ 𝄞", "", "x" * 5000])
def test_encrypt_with_a_fixed_nonce_matches_the_sdk_and_decrypts(data: str) -> None:
    channel = "private-encrypted-vault"
    sealed = orjson.loads(crypto.encrypt(channel, data, MASTER_KEY, nonce=NONCE))
    expected = pusher.crypto.encrypt(channel, data, MASTER_KEY, nonce=NONCE)
    assert sealed == expected
    box = nacl.secret.SecretBox(crypto.shared_secret(channel, MASTER_KEY))
    opened = box.decrypt(base64.b64decode(sealed["ciphertext"]), base64.b64decode(sealed["nonce"]))
    assert opened.decode() == data


def test_encrypt_picks_a_fresh_nonce_each_time() -> None:
    channel = "private-encrypted-vault"
    first = orjson.loads(crypto.encrypt(channel, "same", MASTER_KEY))
    second = orjson.loads(crypto.encrypt(channel, "same", MASTER_KEY))
    assert first["nonce"] != second["nonce"]
    assert len(base64.b64decode(first["nonce"])) == nacl.secret.SecretBox.NONCE_SIZE
    other_box = nacl.secret.SecretBox(crypto.shared_secret("private-encrypted-other", MASTER_KEY))
    with pytest.raises(nacl.exceptions.CryptoError):
        other_box.decrypt(base64.b64decode(first["ciphertext"]), base64.b64decode(first["nonce"]))


# -- channel and user auth -------------------------------------------------------------------
@pytest.mark.asyncio
async def test_private_answer_matches_pusher_docs_and_the_sdk() -> None:
    relay = provider(key=DOC_KEY, secret=DOC_SECRET)
    try:
        answer = relay.authorize_channel(
            socket_id="1234.1234", channel="private-foobar", presence=None
        )
    finally:
        await relay.aclose()
    assert answer == {"auth": DOC_PRIVATE_AUTH}
    assert sdk(DOC_KEY, DOC_SECRET).authenticate("private-foobar", "1234.1234") == answer


@pytest.mark.parametrize(
    ("user_id", "info"),
    [
        ("ann", {}),
        ("ann", {"name": "Ann"}),
        ("u-42", {"name": "Zoë 🚀", "role": ["a", "b"], "n": 1}),
    ],
)
@pytest.mark.asyncio
async def test_presence_answer_matches_the_sdk(user_id: str, info: dict[str, Any]) -> None:
    channel = "presence-lobby"
    relay = provider()
    try:
        answer = relay.authorize_channel(
            socket_id=SOCKET, channel=channel, presence=PresenceData(user_id, info)
        )
    finally:
        await relay.aclose()
    expected = sdk().authenticate(
        channel=channel, socket_id=SOCKET, custom_data={"user_id": user_id, "user_info": info}
    )
    assert answer == expected
    assert json.loads(answer["channel_data"]) == {"user_id": user_id, "user_info": info}


@pytest.mark.parametrize(
    ("user_id", "info"), [("ann", {}), ("ann", {"name": "Ann"}), ("z", {"name": "Zoë ☃"})]
)
@pytest.mark.asyncio
async def test_user_answer_matches_the_sdk(user_id: str, info: dict[str, Any]) -> None:
    relay = provider()
    try:
        answer = relay.authenticate_user(socket_id=SOCKET, user=PresenceData(user_id, info))
    finally:
        await relay.aclose()
    expected = sdk().authenticate_user(SOCKET, {"id": user_id, "user_info": info})
    assert answer == expected
    assert json.loads(answer["user_data"]) == {"id": user_id, "user_info": info}


@pytest.mark.asyncio
async def test_answers_depend_on_the_socket() -> None:
    relay = provider()
    try:
        one = relay.authorize_channel(socket_id="1.1", channel="private-x", presence=None)
        two = relay.authorize_channel(socket_id="1.2", channel="private-x", presence=None)
    finally:
        await relay.aclose()
    assert one["auth"] != two["auth"]
    assert one["auth"].startswith(f"{KEY}:")


# -- webhook verification --------------------------------------------------------------------
def _body(**extra: Any) -> bytes:
    return orjson.dumps(
        {
            "time_ms": int(time.time() * 1000),
            "events": [{"name": "channel_occupied", "channel": "presence-a"}],
            **extra,
        }
    )


def _headers(body: bytes, *, key: str = KEY, secret: str = SECRET) -> dict[str, str]:
    """As the SDK (and Pusher) sign a webhook, lower-cased as Starlette presents them."""
    return {"x-pusher-key": key, "x-pusher-signature": pusher.signature.sign(secret, body.decode())}


def test_webhook_signed_as_the_sdk_signs_is_accepted() -> None:
    body = _body()
    headers = _headers(body)
    assert sdk().validate_webhook(KEY, headers["x-pusher-signature"], body) is not None
    webhooks.verify(KEY, SECRET, headers, body)  # does not raise


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered-body", "X-Pusher-Signature does not match the body"),
        ("wrong-secret", "X-Pusher-Signature does not match the body"),
        ("uppercase-hex", "X-Pusher-Signature does not match the body"),
        ("truncated", "X-Pusher-Signature does not match the body"),
        ("wrong-key", "X-Pusher-Key is not this app's key"),
        ("no-key", "X-Pusher-Key or X-Pusher-Signature is missing"),
        ("no-signature", "X-Pusher-Key or X-Pusher-Signature is missing"),
        ("empty-signature", "X-Pusher-Key or X-Pusher-Signature is missing"),
    ],
)
def test_webhook_refusals(case: str, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    body = _body()
    headers = _headers(body)
    if case == "tampered-body":
        body = body.replace(b"presence-a", b"presence-b")
    elif case == "wrong-secret":
        headers = _headers(body, secret="another-secret-0123456789")
    elif case == "uppercase-hex":
        headers["x-pusher-signature"] = headers["x-pusher-signature"].upper()
    elif case == "truncated":
        headers["x-pusher-signature"] = headers["x-pusher-signature"][:-1]
    elif case == "wrong-key":
        headers["x-pusher-key"] = "other-key"
    elif case == "no-key":
        del headers["x-pusher-key"]
    elif case == "no-signature":
        del headers["x-pusher-signature"]
    else:
        headers["x-pusher-signature"] = ""
    # The oracle refuses it too (where it can be asked at all).
    if "x-pusher-key" in headers and headers.get("x-pusher-signature"):
        oracle = sdk().validate_webhook(
            headers["x-pusher-key"], headers["x-pusher-signature"], body
        )
        assert oracle is None
    with (
        caplog.at_level(logging.WARNING, logger="providers.pusher.webhooks"),
        pytest.raises(InvalidSignature) as refused,
    ):
        webhooks.verify(KEY, SECRET, headers, body)
    assert refused.value.detail == reason
    assert refused.value.status == 401
    assert SECRET not in str(refused.value.problem())
    assert [r.getMessage() for r in caplog.records] == [f"pusher webhook refused: {reason}"]
    assert SECRET not in caplog.text


@pytest.mark.asyncio
async def test_provider_verifies_before_it_parses() -> None:
    relay = provider()
    try:
        with pytest.raises(InvalidSignature):
            relay.parse_webhook({"x-pusher-key": KEY, "x-pusher-signature": "0" * 64}, b"not json")
        body = _body()
        events = relay.parse_webhook(_headers(body), body)
    finally:
        await relay.aclose()
    assert [e.kind for e in events] == ["channel_occupied"]


async def test_a_stale_webhook_is_refused_as_the_sdk_refuses_it() -> None:
    body = orjson.dumps(
        {
            "time_ms": int((time.time() - 3600) * 1000),
            "events": [{"name": "member_added", "channel": "presence-a", "user_id": "ann"}],
        }
    )
    headers = _headers(body)
    assert sdk().validate_webhook(KEY, headers["x-pusher-signature"], body) is None
    relay = provider()
    try:
        with pytest.raises((InvalidSignature, BadRequest)):
            relay.parse_webhook(headers, body)
    finally:
        await relay.aclose()


# -- webhook normalization -------------------------------------------------------------------
def test_normalizes_the_five_kinds_and_ignores_unknown_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = orjson.dumps(
        {
            "time_ms": 1_700_000_000_123,
            "events": [
                {"name": "channel_occupied", "channel": "presence-a"},
                {"name": "member_added", "channel": "presence-a", "user_id": "ann"},
                {"name": "brand_new_kind", "channel": "presence-a", "whatever": 1},
                {
                    "name": "client_event",
                    "channel": "presence-a",
                    "event": "client-typing",
                    "data": '{"on":true}',
                    "socket_id": "1.2",
                    "user_id": "ann",
                },
                {"name": "client_event", "channel": "private-b", "event": "client-x",
                 "data": {"as": "object"}},
                {"name": "member_removed", "channel": "presence-a", "user_id": 42},
                {"name": "channel_vacated", "channel": "presence-a"},
            ],
        }
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="providers.pusher.webhooks"):
        events = webhooks.normalize(body, now=1_700_000_000.123)
    t = 1_700_000_000_123
    assert events == [
        ChannelEvent("channel_occupied", "presence-a", t),
        ChannelEvent("member_added", "presence-a", t, user_id="ann"),
        ChannelEvent(
            "client_event",
            "presence-a",
            t,
            user_id="ann",
            event="client-typing",
            data='{"on":true}',
            socket_id="1.2",
        ),
        ChannelEvent("client_event", "private-b", t, event="client-x", data='{"as":"object"}'),
        ChannelEvent("member_removed", "presence-a", t, user_id="42"),
        ChannelEvent("channel_vacated", "presence-a", t),
    ]
    assert "ignoring unknown event kind 'brand_new_kind'" in caplog.text


def test_a_subscription_count_keeps_its_number_and_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = [
        {"name": "subscription_count", "channel": "a", "subscription_count": 7, "data": "x"},
        {"name": "subscription_count", "channel": "b", "subscription_count": 0},
        {"name": "subscription_count", "channel": "c"},
        {"name": "subscription_count", "channel": "d", "subscription_count": -1},
        {"name": "subscription_count", "channel": "e", "subscription_count": True},
        {"name": "subscription_count", "channel": "f", "subscription_count": "7"},
        {"name": "subscription_count", "channel": "g", "subscription_count": 1.5},
    ]
    body = orjson.dumps({"time_ms": 1000, "events": events})
    with caplog.at_level(logging.INFO, logger="providers.pusher.webhooks"):
        found = webhooks.normalize(body, now=1.0)
    # The count in `data`, where the sessions put theirs and the outbound formats read it.
    assert [(e.channel, e.data) for e in found] == [
        ("a", "7"),
        ("b", "0"),
        ("c", None),
        ("d", None),
        ("e", None),
        ("f", None),
        ("g", None),
    ]
    assert all(e == ChannelEvent("subscription_count", e.channel, 1000, data=e.data) for e in found)
    assert caplog.text.count("a subscription_count without a count") == 4


def test_empty_events_list_is_fine() -> None:
    assert webhooks.normalize(b'{"time_ms": 1000, "events": []}', now=1.0) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"events"',
        b'{"time_ms": 1}',
        b'{"time_ms": 1, "events": {}}',
        b'{"events": []}',
        b'{"time_ms": "1", "events": []}',
        b'{"time_ms": 1.5, "events": []}',
        b'{"time_ms": 1, "events": [1]}',
        b'{"time_ms": 1, "events": [{"name": "channel_occupied"}]}',
        b'{"time_ms": 1, "events": [{"name": "channel_occupied", "channel": 7}]}',
        b'{"time_ms": 1, "events": [{"name": "member_added", "channel": null}]}',
    ],
)
def test_malformed_bodies_are_bad_requests(body: bytes) -> None:
    with pytest.raises(BadRequest) as refused:
        webhooks.normalize(body, now=0.001)
    assert refused.value.status == 400
