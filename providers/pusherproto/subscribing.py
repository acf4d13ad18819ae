"""Whether one `pusher:subscribe` is admitted, and as which presence member.

In this order: `#server-to-user-<id>` only after pusher:signin as <id> (403); a malformed channel
400 `InvalidChannel`; a channel the connection has joined already is no subscription at all
(pusher-js never resubscribes: the session ignores it, unanswered); past the connection's cap 400
`TooManySubscriptions`; a private or presence channel by the signature `/auth/channel` gave this
socket (401), presence with its signed `channel_data` (400 when that names no user); a public
channel by the authorizing service (core/authorizing.py: the `auth` rate limit, 429, then the
policy), for the connection's user. `admit` decides all but the last, from the frame and the
state alone; `authorize` asks the service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgspec import Struct

from core import principal as principals
from core.errors import BadRequest, Forbidden, RateLimited, RelayError, Unauthenticated
from core.validation import ChannelKind, channel_kind, validate_channel
from providers.pusherproto import answers, frames, signing

if TYPE_CHECKING:
    from core.principal import Principal
    from core.provider import PresenceData
    from providers.pusherproto.config import SessionConfig
    from providers.pusherproto.state import SessionState


class Refused(Exception):
    """A subscription refused: pusher:subscription_error with this type and status."""

    def __init__(self, message: str, status: int, kind: str = "AuthError") -> None:
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind

    def frame(self, channel: str) -> str:
        """The pusher:subscription_error frame."""
        return frames.subscription_error(
            channel, kind=self.kind, message=self.message, status=self.status
        )


class Admitted(Struct, frozen=True):
    """A subscription the frame and the state allow; a public one still needs `authorize`."""

    channel: str
    member: PresenceData | None = None
    public: bool = False


def principal_of(state: SessionState) -> Principal:
    """Who the connection is for the policy: pusher:signin's user, else the one it connected as."""
    user_id = state.signed_in or state.user_id
    return principals.ANONYMOUS if user_id is None else principals.user(user_id)


def admit(config: SessionConfig, state: SessionState, data: dict[str, Any]) -> Admitted | None:
    """The subscription to make; None for a channel joined already; raise Refused."""
    raw = data.get("channel")
    if isinstance(raw, str) and raw.startswith(frames.SERVER_TO_USER_PREFIX):
        # pusher-js joins its own #server-to-user- channel after pusher:signin.
        if state.signed_in is None or raw != frames.SERVER_TO_USER_PREFIX + state.signed_in:
            raise Refused("only a signed-in user's own #server-to-user- channel", 403)
        return None if raw in state.channels else Admitted(raw)
    try:
        channel = validate_channel(raw, config.limits)
    except RelayError as exc:
        raise Refused(exc.detail, 400, "InvalidChannel") from exc
    if channel in state.channels:
        return None
    if subscription_count(state) >= config.max_subscriptions:
        message = f"this connection is subscribed to {config.max_subscriptions} channels, the limit"
        raise Refused(message, 400, "TooManySubscriptions")
    kind = channel_kind(channel)
    if kind.needs_auth:
        return Admitted(channel, _verify(config, state, channel, kind, data))
    return Admitted(channel, public=True)


async def authorize(
    config: SessionConfig, state: SessionState, channel: str, *, client_ip: str | None
) -> None:
    """A public channel: the authorizing service's decision for the connection's user.

    Pusher and soketi never refuse a public channel; the relay's policy can. The refusal carries
    the status /auth/channel answers the same user for the same channel (pusher-js reports that
    status for private channels): 401 when a login would help, as soketi answers a missing or bad
    proof (AuthError), and 403 when the user is known and not allowed, as Pusher documents an
    auth endpoint's refusal; 429 past the `auth` rate. So an app sees one status per cause,
    whichever kind of channel it asked for."""
    expires = state.user_expires
    if state.signed_in is None and expires is not None and expires <= config.clock():
        # The token proved who connected; once it expires, that identity no longer counts
        # (signed subscriptions still do: /auth/channel checks a fresh credential).
        raise Refused("token expired: reconnect with a fresh token", 401)
    try:
        await config.gate.authorize_subscription(principal_of(state), channel, client_ip=client_ip)
    except (Unauthenticated, Forbidden) as exc:
        raise Refused(exc.detail, exc.status) from exc
    except RateLimited as exc:
        raise Refused(exc.detail, exc.status, "LimitReached") from exc  # soketi's type for limits
    except BadRequest as exc:
        raise Refused(exc.detail, exc.status, "InvalidChannel") from exc


def subscription_count(state: SessionState) -> int:
    """The connection's subscriptions, as the cap counts them."""
    # The protocol's own `#` channels (#server-to-user- that pusher-js joins by itself after
    # signin, the watchlist's #watchers-) are not the client's subscriptions.
    return sum(not channel.startswith("#") for channel in state.channels)


def _verify(
    config: SessionConfig,
    state: SessionState,
    channel: str,
    kind: ChannelKind,
    data: dict[str, Any],
) -> PresenceData | None:
    """A private or presence channel: the signature /auth/channel gave this socket."""
    channel_data: str | None = None
    if kind is ChannelKind.PRESENCE:
        given = data.get("channel_data")
        if not isinstance(given, str):
            raise Refused("presence subscriptions need channel_data", 401)
        channel_data = given
    if not signing.verify_channel_auth(
        config.app_key,
        config.app_secret,
        data.get("auth"),
        socket_id=state.socket_id,
        channel=channel,
        channel_data=channel_data,
    ):
        raise Refused("Invalid signature", 401)
    if channel_data is None:
        return None
    member = answers.parse_channel_data(channel_data)
    if member is None:
        raise Refused("channel_data must hold a string user_id", 400)
    return member
