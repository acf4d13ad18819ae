"""The JSON answers pusher-js expects from `/auth/channel` and `/auth/user`."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import orjson

from core.provider import PresenceData
from providers.pusherproto import signing

if TYPE_CHECKING:
    from collections.abc import Sequence


def channel_answer(
    key: str,
    secret: str,
    *,
    socket_id: str,
    channel: str,
    presence: PresenceData | None,
    shared_secret: bytes | None = None,
) -> dict[str, str]:
    """`{"auth"}`, plus `channel_data` for presence and `shared_secret` for encrypted channels."""
    channel_data = None
    if presence is not None:
        channel_data = orjson.dumps(
            {"user_id": presence.user_id, "user_info": dict(presence.user_info)}
        ).decode()
    answer = {
        "auth": signing.channel_auth(
            key, secret, socket_id=socket_id, channel=channel, channel_data=channel_data
        )
    }
    if channel_data is not None:
        answer["channel_data"] = channel_data
    if shared_secret is not None:
        answer["shared_secret"] = base64.b64encode(shared_secret).decode()
    return answer


def user_answer(
    key: str,
    secret: str,
    *,
    socket_id: str,
    user: PresenceData,
    watchlist: Sequence[str] = (),
) -> dict[str, str]:
    """`{"auth", "user_data"}` for pusher:signin; user_data carries the watchlist if any."""
    data: dict[str, object] = {"id": user.user_id, "user_info": dict(user.user_info)}
    if watchlist:
        data["watchlist"] = list(watchlist)
    user_data = orjson.dumps(data).decode()
    auth = signing.user_auth(key, secret, socket_id=socket_id, user_data=user_data)
    return {"auth": auth, "user_data": user_data}


def parse_channel_data(channel_data: str) -> PresenceData | None:
    """The presence identity a (signature-checked) channel_data carries, or None if malformed."""
    try:
        parsed = orjson.loads(channel_data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    user_id = parsed.get("user_id")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    info = parsed.get("user_info", {})
    if not isinstance(user_id, str) or not user_id or not isinstance(info, dict):
        return None
    return PresenceData(user_id, info)
