"""Whether a client event (`client-*`) may go out: the checks before the rate limit, in order.

1. the channel is private or presence, the kinds Pusher takes client events on;
2. the connection is subscribed to it;
3. the event name, the data, its size, and the policy's JSON Schema for that event
   (core/schemas.py promises client events are checked as REST publishes are);
4. the policy's `client_events`, for the presence member on a presence channel (who the
   event says sent it), else for the connection's user, asked as a subscriber of the channel
   (the `subscriber` term grants any connection whose subscription the policy authorized).

A channel that takes no client events is refused as such whatever else is wrong with the frame,
as Pusher answers it; then whether the sender may send there at all, then what it sent, then
whether the policy lets it. The session counts the event against the per-connection rate (4301)
last, so that a refused event uses up none of the budget and API Gateway writes its counter only
for an event about to go out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core import principal as principals
from core.access import allowed
from core.errors import RelayError
from core.policy import Action
from core.validation import (
    ChannelKind,
    channel_kind,
    check_payload_size,
    encode_data,
    validate_event_name,
)
from providers.pusherproto.outcome import Broadcast
from providers.pusherproto.subscribing import principal_of

if TYPE_CHECKING:
    from providers.pusherproto.config import SessionConfig
    from providers.pusherproto.state import SessionState

CLIENT_EVENT_KINDS = (ChannelKind.PRIVATE, ChannelKind.PRESENCE)


class Rejected(Exception):
    """A client event refused: pusher:error with this message (code null)."""


def check(
    config: SessionConfig, state: SessionState, name: str, channel: object, data: object
) -> Broadcast:
    """The event for the channel's other subscribers; raise Rejected."""
    if not isinstance(channel, str) or channel_kind(channel) not in CLIENT_EVENT_KINDS:
        raise Rejected("Client events are only for private and presence channels")
    if channel not in state.channels:
        raise Rejected("Client event rejected: not subscribed to that channel")
    member = state.members.get(channel)
    principal = principal_of(state) if member is None else principals.user(member)
    try:
        validate_event_name(name, config.limits, client=True)
        encoded = encode_data(data)
        check_payload_size(encoded, config.limits)
        if config.schemas is not None:
            config.schemas.check(channel, name, encoded)
        decision = config.policy.decide(principal, Action.CLIENT_EVENT, channel, subscribed=True)
        allowed(decision, channel)
    except RelayError as exc:
        raise Rejected(f"Client event rejected: {exc.detail}") from exc
    return Broadcast(channel, name, encoded, user_id=member, json=not isinstance(data, str))
