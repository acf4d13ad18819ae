"""The well-formed gate: channel names, event names, user ids, socket ids and payloads.

Rules follow Pusher Channels, whose naming most clients know; the numeric limits come from the
provider in use (`core.provider.Limits`), so each provider enforces its own.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeGuard

import orjson

from core.errors import (
    BadRequest,
    EncryptedMultiChannel,
    InvalidChannel,
    InvalidEventName,
    InvalidPayload,
    InvalidSocketId,
    InvalidUserId,
    NonFiniteNumber,
    PayloadTooLarge,
    TooManyItems,
)

if TYPE_CHECKING:
    from core.provider import Limits

_CHANNEL_CHARS = re.compile(r"[-a-zA-Z0-9_=@,.;]+")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._~-]{1,200}")
_SOCKET_ID = re.compile(r"[0-9]{1,20}\.[0-9]{1,20}")
RESERVED_EVENT_PREFIXES = ("pusher:", "pusher_internal:")
CLIENT_EVENT_PREFIX = "client-"
# Pusher caps a presence member's user_info; larger member data is refused at auth time.
MAX_USER_INFO_BYTES = 1024
# A user id is whatever sign-in accepts as a JWT `sub`, so that every signed-in user can be
# addressed: any text but control characters (C0, DEL, C1, the line and paragraph separators,
# which could forge a log line) and lone surrogates (no UTF-8 form, so no URL can name them).
MAX_USER_ID_CHARS = 200
_USER_ID_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class ChannelKind(StrEnum):
    """The four kinds of channel, told apart by the name's prefix."""

    PUBLIC = "public"
    PRIVATE = "private"
    PRESENCE = "presence"
    PRIVATE_ENCRYPTED = "private-encrypted"

    @property
    def needs_auth(self) -> bool:
        """Whether a subscription needs a signature from the relay."""
        return self is not ChannelKind.PUBLIC


def channel_kind(channel: str) -> ChannelKind:
    """The kind of an (already validated) channel name."""
    if channel.startswith("private-encrypted-"):
        return ChannelKind.PRIVATE_ENCRYPTED
    if channel.startswith("private-"):
        return ChannelKind.PRIVATE
    if channel.startswith("presence-"):
        return ChannelKind.PRESENCE
    return ChannelKind.PUBLIC


def validate_channel(channel: object, limits: Limits) -> str:
    """Return the channel name if it is well formed, else raise InvalidChannel."""
    if not isinstance(channel, str) or not channel:
        raise InvalidChannel("a channel name must be a non-empty string")
    if len(channel) > limits.max_channel_name:
        raise InvalidChannel(
            f"channel name is {len(channel)} characters; the limit is {limits.max_channel_name}",
            limit=limits.max_channel_name,
        )
    if not _CHANNEL_CHARS.fullmatch(channel):
        raise InvalidChannel("channel names may contain only a-z A-Z 0-9 and - _ = @ , . ;")
    if channel.startswith("private-encrypted-") and not limits.supports_encrypted_channels:
        if limits.encryption_key_variable is None:
            raise InvalidChannel("this provider does not support private-encrypted- channels")
        raise InvalidChannel(
            "this provider does not support private-encrypted- channels until "
            f"{limits.encryption_key_variable} is set (32 random bytes, base64)"
        )
    kind = channel_kind(channel)
    prefix_only = {"private-", "presence-", "private-encrypted-"}
    if kind is not ChannelKind.PUBLIC and channel in prefix_only:
        raise InvalidChannel("a channel name needs more than its prefix")
    return channel


def validate_channels(channels: object, limits: Limits, *, max_count: int) -> list[str]:
    """Validate a list of channel names for one event, deduplicated in order; an encrypted
    channel must be the event's only one."""
    if not isinstance(channels, list) or not channels:
        raise InvalidChannel("give at least one channel")
    if len(channels) > max_count:
        raise TooManyItems(
            f"{len(channels)} channels given; the limit is {max_count}", limit=max_count
        )
    valid = list(dict.fromkeys(validate_channel(c, limits) for c in channels))
    if len(valid) > 1:
        encrypted = next(
            (c for c in valid if channel_kind(c) is ChannelKind.PRIVATE_ENCRYPTED), None
        )
        if encrypted is not None:
            # As Pusher's server SDKs refuse it: the data is sealed with each channel's own key.
            raise EncryptedMultiChannel(
                "You cannot trigger to multiple channels when using encrypted channels: "
                f"publish to {encrypted} in an event of its own",
                channel=encrypted,
            )
    return valid


def validate_event_name(name: object, limits: Limits, *, client: bool = False) -> str:
    """Validate an event name; client events must, and server events must not, start `client-`."""
    if not isinstance(name, str) or not name:
        raise InvalidEventName("an event name must be a non-empty string")
    if len(name) > limits.max_event_name:
        raise InvalidEventName(
            f"event name is {len(name)} characters; the limit is {limits.max_event_name}",
            limit=limits.max_event_name,
        )
    if name.startswith(RESERVED_EVENT_PREFIXES):
        raise InvalidEventName("event names starting with pusher: or pusher_internal: are reserved")
    if client and not name.startswith(CLIENT_EVENT_PREFIX):
        raise InvalidEventName("client event names must start with client-")
    if not client and name.startswith(CLIENT_EVENT_PREFIX):
        raise InvalidEventName("client- event names are for client events only")
    return name


def is_user_id(user_id: object) -> TypeGuard[str]:
    """Whether sign-in accepts this as a user id (and every user route can address it)."""
    return (
        isinstance(user_id, str)
        and 0 < len(user_id) <= MAX_USER_ID_CHARS
        and _USER_ID_REFUSED.search(user_id) is None
    )


def validate_user_id(user_id: object) -> str:
    """Validate a user id for user-addressed calls: exactly the ids sign-in accepts."""
    if is_user_id(user_id):
        return user_id
    raise InvalidUserId(
        f"user ids are 1 to {MAX_USER_ID_CHARS} characters with no control character"
    )


def validate_idempotency_key(key: str | None) -> str | None:
    """An Idempotency-Key header: 1 to 200 characters of A-Z a-z 0-9 and . _ ~ -, or absent."""
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest("Idempotency-Key must be 1 to 200 characters of A-Z a-z 0-9 . _ ~ -")
    return key


def validate_socket_id(socket_id: object) -> str:
    """Validate a Pusher socket id (digits.digits)."""
    if not isinstance(socket_id, str) or not _SOCKET_ID.fullmatch(socket_id):
        raise InvalidSocketId("socket_id must look like 1234.5678")
    return socket_id


def encode_data(data: Any) -> str:
    """The event data as the string that travels: strings as they are, anything else as JSON."""
    if isinstance(data, str):
        return data
    try:
        encoded = orjson.dumps(data)
    except TypeError as exc:
        raise InvalidPayload("data must be a string or JSON-encodable") from exc
    # orjson writes NaN and infinities as null: refuse rather than deliver a changed value. No
    # `null` in the output means no such float, so the walk is skipped for most payloads.
    if b"null" in encoded and _has_non_finite(data):
        raise NonFiniteNumber("data holds NaN or an infinite number, which JSON cannot carry")
    return encoded.decode()


def _has_non_finite(value: Any) -> bool:
    pending = [value]
    while pending:  # a loop, not recursion: nesting depth is the sender's choice
        item = pending.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def _refuse_constant(token: str) -> Any:
    raise NonFiniteNumber(f"{token} is not JSON: numbers must be finite")


def _finite_float(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        raise NonFiniteNumber("a number in the body is too large for a double")
    return value


def loads_json(body: bytes | str) -> Any:
    """Parse a JSON body as the standard library does, but refuse NaN, Infinity and `1e400`.

    Raises NonFiniteNumber for those, and what `json.loads` raises for anything else."""
    return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)


def check_payload_size(data: str, limits: Limits) -> int:
    """Raise PayloadTooLarge unless the UTF-8 encoded data fits; return its size in bytes."""
    try:
        size = len(data.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate from a JSON "\ud800" escape
        raise InvalidPayload("data is not valid Unicode") from exc
    if size > limits.max_payload_bytes:
        raise PayloadTooLarge(
            f"data is {size} bytes encoded; the limit is {limits.max_payload_bytes}",
            limit=limits.max_payload_bytes,
            size=size,
        )
    return size


def encode_user_info(user_info: Any) -> str:
    """Encode presence user_info, refusing anything over MAX_USER_INFO_BYTES."""
    encoded = encode_data(user_info)
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidPayload("presence user_info is not valid Unicode") from exc
    if size > MAX_USER_INFO_BYTES:
        raise PayloadTooLarge(
            f"presence user_info is over {MAX_USER_INFO_BYTES} bytes", limit=MAX_USER_INFO_BYTES
        )
    return encoded
