"""Encrypted channels: the per-channel key and the sealed payload against known answers of the
official Node SDK, sealing a provider's messages, and the multi-channel refusal on every provider.

The known answers were produced by the Node `pusher` SDK (5.3.4, node_modules/pusher): its
`channelSharedSecret(channel)` and `authorizeChannel(socket, channel)`, and the `nacl.secretbox`
call of its `lib/events.js` encrypt() with the random nonce replaced by bytes 0..23, for the
master key bytes 0..31. Nothing in this file derives them with the relay's own code.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import nacl.exceptions
import nacl.secret
import orjson
import pytest

from core.errors import (
    EncryptedMultiChannel,
    InvalidChannel,
    InvalidPayload,
    NotSupported,
    PayloadTooLarge,
)
from core.provider import Limits, Message
from core.settings import Settings, read_env
from core.validation import validate_channels
from providers.apigateway.provider import ApiGatewayProvider
from providers.apigateway.settings import ApiGatewaySettings
from providers.local.provider import LocalProvider
from providers.pusher.provider import PusherProvider
from providers.pusher.settings import PusherSettings
from providers.pusherproto import encryption
from tests.import_probe import fresh

if TYPE_CHECKING:
    from core.provider import Provider

MASTER_KEY = bytes(range(32))
MASTER_KEY_BASE64 = base64.b64encode(MASTER_KEY).decode()
NONCE = bytes(range(24))
SOCKET = "123456.7890123"
APP_SECRET = "s"  # the Node SDK's secret for NODE_AUTH: a one-letter test value, not a credential
ENCRYPTED = Limits(supports_encrypted_channels=True)

# The Node SDK's answers (see the module docstring).
NODE_SHARED_SECRETS = {
    "private-encrypted-vault": "wp8Orjt2S4H4n8dDP7pa2A9reduRTTedbaiVnjqomsc=",
    "private-encrypted-room-42": "g54BnYFYBFDNlIPjRpV+58ix1A+0jLIAh4PGor0dgCA=",
}
NODE_CIPHERTEXTS = {
    ("private-encrypted-vault", "hello"): "bfb+7cceSGnXpmxJj7MspswtQd9e",
    ("private-encrypted-vault", '{"a":1}'): "nlIr9BEP7ljBa8aAJbdPrN9qTJELtX4=",
    ("private-encrypted-room-42", "hello"): "s0vocZxE0y7t44sGsK30ed13G56O",
    ("private-encrypted-room-42", '{"a":1}'): "t0AF8OwSyZKTV09KX1Ihq84wFtDbN3I=",
}
NODE_AUTH = "k:80faf85f847aa2c059e83493a48a5c1427de58ce4152e3d7423d44a1d6e2584d"


def opened(channel: str, data: str, master: bytes = MASTER_KEY) -> str:
    """What pusher-js gets from a sealed payload: the secretbox opened with the channel's key."""
    envelope = orjson.loads(data)
    assert set(envelope) == {"nonce", "ciphertext"}
    box = nacl.secret.SecretBox(encryption.shared_secret(channel, master))
    return box.decrypt(
        base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"])
    ).decode()


# -- known answers ----------------------------------------------------------------------------
@pytest.mark.parametrize("channel", sorted(NODE_SHARED_SECRETS))
def test_shared_secret_is_the_node_sdks(channel: str) -> None:
    expected = base64.b64decode(NODE_SHARED_SECRETS[channel])
    assert encryption.shared_secret(channel, MASTER_KEY) == expected


@pytest.mark.parametrize(("channel", "data"), sorted(NODE_CIPHERTEXTS))
def test_sealed_payload_with_a_fixed_nonce_is_the_node_sdks(channel: str, data: str) -> None:
    sealed = encryption.encrypt(channel, data, MASTER_KEY, nonce=NONCE)
    assert orjson.loads(sealed) == {
        "nonce": base64.b64encode(NONCE).decode(),
        "ciphertext": NODE_CIPHERTEXTS[(channel, data)],
    }


def test_relay_signed_answer_carries_the_node_sdks_shared_secret() -> None:
    settings = Settings(
        env="test",
        app_key="k",
        app_secret="sixteen-chars-app-secret",
        encryption_master_key_base64=MASTER_KEY_BASE64,
    )
    provider = LocalProvider(settings)
    channel = "private-encrypted-vault"
    answer = provider.authorize_channel(socket_id=SOCKET, channel=channel, presence=None)
    assert answer["shared_secret"] == NODE_SHARED_SECRETS[channel]
    assert set(answer) == {"auth", "shared_secret"}
    plain = provider.authorize_channel(socket_id=SOCKET, channel="private-x", presence=None)
    assert set(plain) == {"auth"}


def test_the_answers_auth_is_the_node_sdks_for_its_secret() -> None:
    # The Node SDK signs with the secret "s" (too short for the relay's settings): the shared
    # secret rides beside an auth signed exactly as for a private channel.
    from providers.pusherproto import answers

    answer = answers.channel_answer(
        "k",
        APP_SECRET,
        socket_id=SOCKET,
        channel="private-encrypted-vault",
        presence=None,
        shared_secret=encryption.shared_secret("private-encrypted-vault", MASTER_KEY),
    )
    assert answer == {
        "auth": NODE_AUTH,
        "shared_secret": NODE_SHARED_SECRETS["private-encrypted-vault"],
    }


# -- seal -------------------------------------------------------------------------------------
def test_seal_seals_encrypted_channels_each_with_its_key_and_leaves_the_rest() -> None:
    messages = [
        Message("private-encrypted-a", "e", "secret", socket_id="1.2", id="k:0"),
        Message("private-b", "e", "secret", id="k:1"),
        Message("private-encrypted-c", "e", "secret", id="k:2"),
    ]
    sealed = encryption.seal(messages, MASTER_KEY, ENCRYPTED)
    assert sealed[1] is messages[1]
    for before, after in ((messages[0], sealed[0]), (messages[2], sealed[2])):
        assert "secret" not in after.data
        assert opened(after.channel, after.data) == "secret"
        assert (after.channel, after.name, after.socket_id, after.id) == (
            before.channel,
            before.name,
            before.socket_id,
            before.id,
        )
        assert after.json  # the relay encoded it: SSE and history give it back as an object
    with pytest.raises(nacl.exceptions.CryptoError):
        opened("private-encrypted-c", sealed[0].data)


def test_seal_without_an_encrypted_channel_changes_and_copies_nothing() -> None:
    messages = [Message("news", "e", "{}"), Message("private-x", "e", "{}")]
    assert encryption.seal(messages, None, Limits()) is messages
    assert encryption.seal(messages, MASTER_KEY, ENCRYPTED) is messages


def test_seal_forwards_data_the_sdks_sealed_already() -> None:
    """The Pusher HTTP API path: the server SDKs seal before they send. Sealing is idempotent."""
    channel = "private-encrypted-a"
    once = encryption.seal([Message(channel, "e", "x")], MASTER_KEY, ENCRYPTED)
    twice = encryption.seal(once, MASTER_KEY, ENCRYPTED)
    assert twice[0] is once[0]
    sdk_spaced = orjson.loads(once[0].data)  # json.dumps spacing, as the Python SDK sends it
    spaced = f'{{"nonce": "{sdk_spaced["nonce"]}", "ciphertext": "{sdk_spaced["ciphertext"]}"}}'
    forwarded = encryption.seal([Message(channel, "e", spaced)], MASTER_KEY, ENCRYPTED)
    assert forwarded[0].data == spaced
    assert opened(channel, forwarded[0].data) == "x"


def test_seal_refuses_data_sealed_with_another_key() -> None:
    channel = "private-encrypted-a"
    foreign = encryption.encrypt(channel, "x", bytes(32))
    with pytest.raises(InvalidPayload, match="sealed with another key"):
        encryption.seal([Message(channel, "e", foreign)], MASTER_KEY, ENCRYPTED)
    # Sealed for another channel under the same master key is no better.
    other = encryption.encrypt("private-encrypted-b", "x", MASTER_KEY)
    with pytest.raises(InvalidPayload):
        encryption.seal([Message(channel, "e", other)], MASTER_KEY, ENCRYPTED)


@pytest.mark.parametrize(
    "data",
    [
        '{"nonce":"AAAA","ciphertext":"AAAA"}',  # a nonce that is not 24 bytes
        '{"nonce":"not base64!","ciphertext":"x"}',
        '{"nonce":1,"ciphertext":2}',
        '{"ciphertext":"AAAA"}',
        '{"nonce":"x","ciphertext":"y","more":1}',
        "{ciphertext",
    ],
)
def test_seal_seals_plaintext_that_only_looks_like_a_sealed_payload(data: str) -> None:
    sealed = encryption.seal([Message("private-encrypted-a", "e", data)], MASTER_KEY, ENCRYPTED)
    assert opened("private-encrypted-a", sealed[0].data) == data


def test_seal_checks_the_sealed_size_and_refuses_before_sealing_the_rest() -> None:
    limits = Limits(max_payload_bytes=1024, supports_encrypted_channels=True)
    fits = "x" * 700  # 700 + 16 bytes of MAC, base64: 956 characters, plus the envelope's 60
    assert len(encryption.seal([Message("private-encrypted-a", "e", fits)], MASTER_KEY, limits))
    with pytest.raises(PayloadTooLarge, match="once encrypted") as refused:
        encryption.seal([Message("private-encrypted-a", "e", "x" * 900)], MASTER_KEY, limits)
    assert refused.value.extra["limit"] == 1024
    assert refused.value.extra["size"] > 1024
    assert refused.value.status == 413


def test_seal_without_a_master_key_names_the_variable() -> None:
    limits = Limits(encryption_key_variable="RELAY_ENCRYPTION_MASTER_KEY_BASE64")
    with pytest.raises(NotSupported, match="RELAY_ENCRYPTION_MASTER_KEY_BASE64"):
        encryption.seal([Message("private-encrypted-a", "e", "x")], None, limits)


def test_importing_the_module_leaves_nacl_to_the_first_encrypted_message() -> None:
    program = (
        "import json, sys\n"
        "from providers.pusherproto import encryption\n"
        "from providers.local.provider import LocalProvider\n"
        "from providers.apigateway.provider import ApiGatewayProvider\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'nacl')))\n"
    )
    assert fresh(program) == []


# -- every provider ----------------------------------------------------------------------------
def relay_settings(**overrides: str) -> Settings:
    values = {
        "env": "test",
        "app_key": "k",
        "app_secret": "sixteen-chars-app-secret",
        **overrides,
    }
    return Settings(**values)


def providers(master: str | None) -> list[Provider]:
    key = {} if master is None else {"encryption_master_key_base64": master}
    settings = relay_settings(**key)
    pusher = PusherSettings(
        app_id="1",
        key="k",
        secret="pusher-secret-0123456789",
        **key,
    )
    gateway = ApiGatewaySettings(endpoint="https://example.invalid/prod")
    return [
        LocalProvider(settings),
        ApiGatewayProvider(settings, gateway),
        PusherProvider(pusher),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["local", "apigateway", "pusher"])
@pytest.mark.parametrize(
    "channels",
    [
        ["private-encrypted-a", "news"],
        ["news", "private-encrypted-a"],
        ["private-encrypted-a", "private-encrypted-b"],
    ],
)
def test_an_event_for_several_channels_with_an_encrypted_one_is_refused(
    index: int, channels: list[str]
) -> None:
    provider = providers(MASTER_KEY_BASE64)[index]
    assert provider.limits.supports_encrypted_channels
    with pytest.raises(EncryptedMultiChannel, match="multiple channels") as refused:
        validate_channels(channels, provider.limits, max_count=100)
    assert refused.value.status == 400
    assert refused.value.type == "urn:realtime-relay:problem:encrypted-multi-channel"
    assert refused.value.extra["channel"] in channels
    # Alone, and repeated (deduplicated to one), it is fine.
    assert validate_channels([channels[0]] * 2, provider.limits, max_count=100) == channels[:1]


@pytest.mark.parametrize(
    ("index", "variable"),
    [
        (0, "RELAY_ENCRYPTION_MASTER_KEY_BASE64"),
        (1, "RELAY_ENCRYPTION_MASTER_KEY_BASE64"),
        (2, "PUSHER_ENCRYPTION_MASTER_KEY_BASE64"),
    ],
    ids=["local", "apigateway", "pusher"],
)
def test_without_a_master_key_the_refusal_names_the_variable(index: int, variable: str) -> None:
    provider = providers(None)[index]
    assert not provider.limits.supports_encrypted_channels
    with pytest.raises(InvalidChannel, match=variable):
        validate_channels(["private-encrypted-a"], provider.limits, max_count=100)


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(bytes(31)).decode()])
def test_a_bad_relay_master_key_is_refused_naming_the_variable_not_the_value(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_ENCRYPTION_MASTER_KEY_BASE64", value)
    from core.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as refused:
        read_env(Settings)
    text = "; ".join(refused.value.problems)
    assert "RELAY_ENCRYPTION_MASTER_KEY_BASE64" in text
    assert value not in text


def test_an_empty_relay_master_key_is_none() -> None:
    assert relay_settings(encryption_master_key_base64="").encryption_master_key is None
    with_key = relay_settings(encryption_master_key_base64=MASTER_KEY_BASE64)
    assert with_key.encryption_master_key == MASTER_KEY
    assert MASTER_KEY_BASE64 not in repr(with_key)
