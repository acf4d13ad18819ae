"""What a Pusher protocol session remembers about its connection, as plain data.

The local server keeps one `SessionState` per socket for the socket's life; the API Gateway
handlers rebuild it from the connection's DynamoDB row for each frame (providers/apigateway/
port.py), which is why it holds values only: no sockets, no tasks, no callbacks.
"""

from __future__ import annotations

import secrets

from msgspec import Struct, field


def new_socket_id() -> str:
    """A Pusher-style socket id: two random integers joined by a dot."""
    return f"{secrets.randbelow(10**9)}.{secrets.randbelow(10**9)}"


class Window(Struct, frozen=True):
    """A counter over a window of time that opens with its first count (`since`, in seconds).

    Both servers count the same way: the API Gateway store keeps `since` and `count` on the
    connection's row and applies `counted` as two conditional writes, so concurrent invocations
    for one connection cannot both take the last place."""

    since: float = 0.0
    count: int = 0

    def counted(self, now: float, *, span: float, limit: int) -> Window | None:
        """The window with one more count (a new window once `span` has passed), or None when
        it is full."""
        if now - self.since >= span:
            return Window(now, 1) if limit >= 1 else None
        if self.count < limit:
            return Window(self.since, self.count + 1)
        return None


class SessionState(Struct):
    """One connection's protocol state."""

    socket_id: str
    # The user the connection proved at connect (API Gateway's `?token=`; the local socket takes
    # no token), and when that proof expires (the token's `exp`).
    user_id: str | None = None
    user_expires: float | None = None
    signed_in: str | None = None  # pusher:signin's user: the connection's user from then on
    channels: set[str] = field(default_factory=set)
    members: dict[str, str] = field(default_factory=dict)  # presence channel -> member user id
    client_events: Window = field(default_factory=Window)
    invalid_frames: Window = field(default_factory=Window)
