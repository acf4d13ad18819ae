"""End-to-end encrypted channels, as Pusher defines them: a per-channel key and NaCl secretbox.

Every Pusher-protocol provider seals its messages here, at the top of its `publish`: the relay's
own servers (local, apigateway: RELAY_ENCRYPTION_MASTER_KEY_BASE64) and Pusher itself
(PUSHER_ENCRYPTION_MASTER_KEY_BASE64). PyNaCl is imported on the first encrypted message only, so
that it stays out of a Lambda cold start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TYPE_CHECKING

import orjson
from msgspec import structs

from core.errors import InvalidPayload, NotSupported, PayloadTooLarge
from core.validation import ChannelKind, channel_kind

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.provider import Limits, Message

NONCE_BYTES = 24  # nacl.secret.SecretBox.NONCE_SIZE, without importing nacl
ENCRYPTED_PREFIX = "private-encrypted-"


def shared_secret(channel: str, master_key: bytes) -> bytes:
    """SHA-256 of the channel name followed by the master key: the channel's secretbox key."""
    return hashlib.sha256(channel.encode() + master_key).digest()


def encrypt(channel: str, data: str, master_key: bytes, *, nonce: bytes | None = None) -> str:
    """The event data as pusher-js decrypts it: `{"nonce", "ciphertext"}`, both base64."""
    import nacl.secret
    import nacl.utils

    box = nacl.secret.SecretBox(shared_secret(channel, master_key))
    nonce = nonce or nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    ciphertext = box.encrypt(data.encode(), nonce).ciphertext
    return orjson.dumps(
        {
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(ciphertext).decode(),
        }
    ).decode()


def seal(
    messages: Sequence[Message], master_key: bytes | None, limits: Limits
) -> Sequence[Message]:
    """The messages with the data of each one on a private-encrypted- channel sealed with that
    channel's key, every sealed payload checked against `limits`; the others unchanged.

    Data already sealed for its channel is sent as it is: the official server SDKs seal before
    they call the Pusher HTTP API, and it opens under the channel's key, which only a holder of
    the master key can produce. Data shaped as a sealed payload that does not open is refused
    (the sender's master key is not this one) rather than sealed a second time."""
    if not any(m.channel.startswith(ENCRYPTED_PREFIX) for m in messages):
        return messages  # the common case: nothing to do, nothing copied
    if master_key is None:
        needed = limits.encryption_key_variable or "an encryption master key"
        raise NotSupported(f"private-encrypted- channels need {needed}")
    sealed: list[Message] = []
    for m in messages:
        encrypted = channel_kind(m.channel) is ChannelKind.PRIVATE_ENCRYPTED
        if not encrypted or _sealed_for(m.channel, m.data, master_key):
            sealed.append(m)
            continue
        data = encrypt(m.channel, m.data, master_key)
        _check_sealed_size(data, limits)
        sealed.append(structs.replace(m, data=data, json=True))
    return sealed


def _check_sealed_size(data: str, limits: Limits) -> None:
    size = len(data)  # base64 and JSON punctuation: ASCII, one byte a character
    if size > limits.max_payload_bytes:
        raise PayloadTooLarge(
            f"data is {size} bytes once encrypted; the limit is {limits.max_payload_bytes}",
            limit=limits.max_payload_bytes,
            size=size,
        )


def _sealed_for(channel: str, data: str, master_key: bytes) -> bool:
    """Whether `data` is a sealed payload that opens under the channel's key; raise when it is
    one that does not."""
    if not data.startswith("{") or "ciphertext" not in data:
        return False  # cheap: most plaintext is not even a candidate
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    if not (isinstance(parsed, dict) and set(parsed) == {"nonce", "ciphertext"}):
        return False
    try:
        nonce = base64.b64decode(parsed["nonce"], validate=True)
        ciphertext = base64.b64decode(parsed["ciphertext"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        return False
    if len(nonce) != NONCE_BYTES:
        return False
    import nacl.exceptions
    import nacl.secret

    try:
        nacl.secret.SecretBox(shared_secret(channel, master_key)).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError as exc:
        raise InvalidPayload(
            f"the data for {channel} is sealed with another key: give the server SDK the "
            "relay's encryption master key, or publish the data unencrypted for the relay to seal"
        ) from exc
    return True
