"""Frame patterns and step groups the exchanges share: what Pusher protocol 7 frames look like."""

from __future__ import annotations

from typing import Any

from tests.conformance.patterns import (
    ANY,
    Chan,
    Optional,
    Regex,
    User,
)
from tests.conformance.script import (
    Connect,
    Expect,
    Send,
    Step,
    Subscribe,
)

ANN = User("ann", "Ann")
BOB = User("bob", "Bob")
NEWS = Chan("news")  # public
CHAT = Chan("private-chat")
ROOM = Chan("presence-room")
MEMBERS = Chan("members-only")  # public, but the relays' policy lets only users in


def succeeded(channel: Chan | str) -> dict[str, Any]:
    """pusher_internal:subscription_succeeded, its data not looked at (the exchange about
    subscribing checks it)."""
    return {
        "event": "pusher_internal:subscription_succeeded",
        "channel": channel,
        "data": Optional(ANY),
    }


def refused(channel: Chan | str, kind: str, status: int, error: Any = ANY) -> dict[str, Any]:
    """pusher:subscription_error, whose data is an object (not a string) in Pusher's protocol."""
    return {
        "event": "pusher:subscription_error",
        "channel": channel,
        "data": {"type": kind, "error": error, "status": status},
    }


def error(message: str, code: int | None = None) -> dict[str, Any]:
    """The relays' pusher:error: `message` is a regular expression, `code` None when the
    connection may carry on as before."""
    return {"event": "pusher:error", "data": {"message": Regex(message), "code": code}}


def soketi_error(channel: Chan, message: str) -> dict[str, Any]:
    """soketi's refusal of a client event: code 4301 whatever the reason, and the channel."""
    return {"event": "pusher:error", "channel": channel, "data": {"code": 4301, "message": message}}


def event(channel: Chan | str, name: str, data: Any, **extra: Any) -> dict[str, Any]:
    """An event frame (`data` is a pattern: `Json(...)` for data sent JSON-encoded)."""
    return {"event": name, "channel": channel, "data": data, **extra}


def client_event(channel: Chan, name: str, data: Any) -> dict[str, Any]:
    """A client event as pusher-js's `channel.trigger` sends it."""
    return {"event": name, "channel": channel, "data": data}


def unsubscribe(channel: Chan) -> dict[str, Any]:
    """pusher:unsubscribe."""
    return {"event": "pusher:unsubscribe", "data": {"channel": channel}}


def join(client: str, channel: Chan | str, user: User | None = None) -> tuple[Step, ...]:
    """Subscribe (signed as `user` for private and presence channels) and see it succeed."""
    return (Send(client, Subscribe(channel, as_user=user)), Expect(client, succeeded(channel)))


def pair(channel: Chan, first: User | None = None, second: User | None = None) -> tuple[Step, ...]:
    """Clients a and b connected and subscribed to a private or public channel."""
    return (Connect("a"), Connect("b"), *join("a", channel, first), *join("b", channel, second))
