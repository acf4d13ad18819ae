"""What a session answers to a frame: frames for the sender, events for the others, and a close.

A driver carries an Outcome out in its order: replies first, then broadcasts, then the close. The
API Gateway driver sends a lone reply as the route response and posts everything else; the local
driver queues replies on the socket and hands broadcasts to the hub.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from msgspec import Struct, field

from providers.pusherproto import frames

if TYPE_CHECKING:
    from core.provider import PresenceData

MEMBER_ADDED = "pusher_internal:member_added"
MEMBER_REMOVED = "pusher_internal:member_removed"


class Broadcast(Struct, frozen=True):
    """An event for a channel's subscribers, the sender's connection excepted when it is one."""

    channel: str
    event: str
    data: str  # the string that travels
    user_id: str | None = None  # a presence member's client event carries its sender
    exclude_sender: bool = True
    json: bool = False  # data is JSON the relay encoded from a non-string value (as in Message)

    @property
    def internal(self) -> bool:
        """Protocol bookkeeping (presence changes) rather than an application event."""
        return self.event.startswith("pusher_internal:")

    def frame(self) -> str:
        """The protocol 7 frame."""
        return frames.event(self.event, self.channel, self.data, user_id=self.user_id)


class Outcome(Struct):
    """The session's answer to one frame."""

    replies: list[str] = field(default_factory=list)
    broadcasts: list[Broadcast] = field(default_factory=list)
    close: int | None = None  # close the connection with this code after the replies


def member_added(channel: str, member: PresenceData) -> Broadcast:
    """A user's first connection joined a presence channel."""
    data = orjson.dumps({"user_id": member.user_id, "user_info": member.user_info}).decode()
    return Broadcast(channel, MEMBER_ADDED, data, json=True)


def member_removed(channel: str, user_id: str) -> Broadcast:
    """A user's last connection left a presence channel."""
    data = orjson.dumps({"user_id": user_id}).decode()
    return Broadcast(channel, MEMBER_REMOVED, data, json=True)
