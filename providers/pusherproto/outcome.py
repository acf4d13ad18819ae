"""What a session answers to a frame: frames for the sender, events for the others, and a close.

A driver carries an Outcome out in its order: replies first, then broadcasts, then the close. The
API Gateway driver sends a lone reply as the route response and posts everything else; the local
driver queues replies on the socket and hands broadcasts to the hub. The hooks (what the app's
backend hears by webhook: occupied, vacated, members, client events, cache misses, counts) go to
the process's webhook sink (core/webhooks), which only enqueues them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from msgspec import Struct, field

from core.provider import ChannelEvent
from providers.pusherproto import frames

if TYPE_CHECKING:
    from core.provider import PresenceData
    from providers.pusherproto.port import Joined, Left

MEMBER_ADDED = "pusher_internal:member_added"
MEMBER_REMOVED = "pusher_internal:member_removed"
SUBSCRIPTION_COUNT = "pusher_internal:subscription_count"
WATCHLIST_EVENTS = "pusher_internal:watchlist_events"
WATCHERS_PREFIX = "#watchers-"  # the connections whose watchlist holds the user


class Broadcast(Struct, frozen=True):
    """An event for a channel's subscribers, the sender's connection excepted when it is one."""

    channel: str
    event: str
    data: str  # the string that travels
    user_id: str | None = None  # a presence member's client event carries its sender
    exclude_sender: bool = True
    json: bool = False  # data is JSON the relay encoded from a non-string value (as in Message)
    # The frame names no channel: a watchlist event is the connection's, not a channel's, and
    # travels on a `#watchers-` channel only to reach the right connections.
    channelless: bool = False

    @property
    def internal(self) -> bool:
        """Protocol bookkeeping (presence changes) rather than an application event."""
        return self.event.startswith("pusher_internal:")

    def frame(self) -> str:
        """The protocol 7 frame."""
        if self.channelless:
            return frames.connection_event(self.event, self.data)
        return frames.event(self.event, self.channel, self.data, user_id=self.user_id)


class Outcome(Struct):
    """The session's answer to one frame."""

    replies: list[str] = field(default_factory=list)
    broadcasts: list[Broadcast] = field(default_factory=list)
    close: int | None = None  # close the connection with this code after the replies
    hooks: list[ChannelEvent] = field(default_factory=list)  # for the outbound webhooks


def member_added(channel: str, member: PresenceData) -> Broadcast:
    """A user's first connection joined a presence channel."""
    data = orjson.dumps({"user_id": member.user_id, "user_info": member.user_info}).decode()
    return Broadcast(channel, MEMBER_ADDED, data, json=True)


def member_removed(channel: str, user_id: str) -> Broadcast:
    """A user's last connection left a presence channel."""
    data = orjson.dumps({"user_id": user_id}).decode()
    return Broadcast(channel, MEMBER_REMOVED, data, json=True)


def subscription_count(channel: str, count: int) -> Broadcast:
    """A non-presence channel's subscription count changed: every subscriber hears it, the
    connection that changed it included."""
    data = orjson.dumps({"subscription_count": count}).decode()
    return Broadcast(channel, SUBSCRIPTION_COUNT, data, exclude_sender=False, json=True)


def watchlist_event(user_id: str, name: str) -> Broadcast:
    """`online` or `offline` of one user, for the connections watching it."""
    data = watchlist_data(name, [user_id])
    return Broadcast(WATCHERS_PREFIX + user_id, WATCHLIST_EVENTS, data, json=True, channelless=True)


def watchlist_data(name: str, user_ids: list[str]) -> str:
    """pusher_internal:watchlist_events' data, as pusher-js's watchlist reads it."""
    return orjson.dumps({"events": [{"name": name, "user_ids": user_ids}]}).decode()


def joined_hooks(
    channel: str, member: PresenceData | None, joined: Joined, time_ms: int
) -> list[ChannelEvent]:
    """What a subscription tells the app's backend: the channel occupied (its first
    subscription, of the cluster where the port counts the cluster's), then the member added
    (the user's first connection there). The protocol's own `#` channels are nobody's news."""
    if channel.startswith("#"):
        return []
    hooks = []
    if joined.count == 1:
        hooks.append(ChannelEvent("channel_occupied", channel, time_ms))
    if member is not None and joined.first:
        hooks.append(ChannelEvent("member_added", channel, time_ms, user_id=member.user_id))
    return hooks


def left_hooks(channel: str, left: Left, time_ms: int) -> list[ChannelEvent]:
    """What an unsubscription tells the app's backend: the member removed (the user's last
    connection there), then the channel vacated (its last subscription)."""
    if channel.startswith("#"):
        return []
    hooks = []
    if left.user_id is not None:
        hooks.append(ChannelEvent("member_removed", channel, time_ms, user_id=left.user_id))
    if left.count == 0:
        hooks.append(ChannelEvent("channel_vacated", channel, time_ms))
    return hooks
