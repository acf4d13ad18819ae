"""End-to-end encrypted channels, as Pusher defines them: a per-channel key and NaCl secretbox."""

from __future__ import annotations

import base64
import hashlib

import orjson


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
