"""Pusher Channels protocol 7 frames, as pusher-js sends and expects them.

Server frames carry `data` as a JSON-encoded string (pusher-js decodes it again), except
`pusher:error` and `pusher:subscription_error`, whose data is an object.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from core.provider import Member

PROTOCOL_VERSION = 7
MIN_PROTOCOL_VERSION = 5
# pusher-js joins this channel after pusher:signin; send_to_user publishes on it.
SERVER_TO_USER_PREFIX = "#server-to-user-"


class ErrorCode(IntEnum):
    """Pusher's close and error codes; 4000-4099 tell clients not to reconnect."""

    SSL_ONLY = 4000
    APP_NOT_FOUND = 4001
    APP_DISABLED = 4003
    APP_OVER_CONNECTION_QUOTA = 4004
    PATH_NOT_FOUND = 4005
    INVALID_VERSION = 4006
    UNSUPPORTED_PROTOCOL = 4007
    NO_PROTOCOL = 4008
    UNAUTHORIZED = 4009
    # The relay's own: a socket that keeps sending what is no protocol 7 frame. In the range
    # pusher-js does not reconnect after (the same client would send the same frames again),
    # and unassigned by Pusher, so never confused with one of its errors.
    TOO_MANY_INVALID_FRAMES = 4010
    OVER_CAPACITY = 4100  # reconnect after backoff (also: a slow consumer was cut off)
    GENERIC_RECONNECT = 4200  # reconnect at once (server shutting down)
    PONG_NOT_RECEIVED = 4201
    CLOSED_AFTER_INACTIVITY = 4202
    CLIENT_EVENT_RATE_LIMIT = 4301


def _dumps(frame: Mapping[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def _json_string(data: Any) -> str:
    return orjson.dumps(data).decode()


def event(event_name: str, channel: str, data: str, *, user_id: str | None = None) -> str:
    """An event delivered to a channel's subscribers (data is already the string that travels)."""
    frame: dict[str, Any] = {"event": event_name, "channel": channel, "data": data}
    if user_id is not None:
        frame["user_id"] = user_id
    return _dumps(frame)


def connection_event(event_name: str, data: str) -> str:
    """An event for the connection rather than a channel (pusher_internal:watchlist_events)."""
    return _dumps({"event": event_name, "data": data})


def cache_miss(channel: str) -> str:
    """A cache channel had no event to send on subscribe."""
    return _dumps({"event": "pusher:cache_miss", "channel": channel})


def connection_established(socket_id: str, activity_timeout: int) -> str:
    """The first frame of every connection."""
    payload = {"socket_id": socket_id, "activity_timeout": activity_timeout}
    return _dumps({"event": "pusher:connection_established", "data": _json_string(payload)})


def error(message: str, code: int | None = None) -> str:
    """A connection-level error (code None for a recoverable complaint)."""
    return _dumps({"event": "pusher:error", "data": {"message": message, "code": code}})


def subscription_succeeded(channel: str, presence: Mapping[str, Any] | None = None) -> str:
    """Subscription confirmed; presence channels carry the roster."""
    data = _json_string({"presence": presence} if presence is not None else {})
    return _dumps(
        {"event": "pusher_internal:subscription_succeeded", "channel": channel, "data": data}
    )


def roster(members: Iterable[Member]) -> dict[str, Any]:
    """A presence channel's members as subscription_succeeded carries them, by user id."""
    ordered = sorted(members, key=lambda m: m.user_id)
    return {
        "ids": [m.user_id for m in ordered],
        "hash": {m.user_id: m.user_info for m in ordered},
        "count": len(ordered),
    }


def subscription_error(channel: str, *, kind: str, message: str, status: int) -> str:
    """Subscription refused; pusher-js emits it as pusher:subscription_error on the channel."""
    return _dumps(
        {
            "event": "pusher:subscription_error",
            "channel": channel,
            "data": {"type": kind, "error": message, "status": status},
        }
    )


def member_added(channel: str, user_id: str, user_info: Mapping[str, Any]) -> str:
    """A user's first socket joined a presence channel."""
    data = _json_string({"user_id": user_id, "user_info": user_info})
    return _dumps({"event": "pusher_internal:member_added", "channel": channel, "data": data})


def member_removed(channel: str, user_id: str) -> str:
    """A user's last socket left a presence channel."""
    data = _json_string({"user_id": user_id})
    return _dumps({"event": "pusher_internal:member_removed", "channel": channel, "data": data})


def signin_success(user_data: str) -> str:
    """A socket signed in as a user."""
    return _dumps(
        {"event": "pusher:signin_success", "data": _json_string({"user_data": user_data})}
    )


def ping() -> str:
    """Server-initiated liveness check."""
    return _dumps({"event": "pusher:ping", "data": "{}"})


def pong() -> str:
    """Answer to a client's pusher:ping."""
    return _dumps({"event": "pusher:pong", "data": "{}"})


def parse(text: str) -> dict[str, Any]:
    """Decode a client frame; raise ValueError unless it is an object with a string `event`."""
    frame = orjson.loads(text)
    if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
        raise ValueError("a frame must be a JSON object with a string event")
    data = frame.get("data")
    if isinstance(data, str) and frame["event"].startswith("pusher:"):
        # Some clients send protocol data JSON-encoded twice; accept both forms.
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            decoded = data
        frame["data"] = decoded
    return frame
