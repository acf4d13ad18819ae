"""The authorizing service: the gates every flow but publishing passes, run here and only here.

    identity    who is calling: the shell hands in a Principal (HTTP credentials through
                app.relay's `identify`, a socket's signed-in user) and the caller's address
    rate limit  the caller's, the address's and the channel's rule's buckets (core.ratelimit)
    policy      may this principal do this on this channel (core.policy); deny by default
    validation  what depends on the decision: the presence member a grant carries, its size

Always in this order, the order core.publishing runs for publishes: a caller over its rate
learns nothing from the policy, and a caller the policy refuses learns nothing that only an
allowed caller may see. Before the rate limit the request is read: a channel name that is no
channel name (characters, length, a public channel sent to be signed, too many of them) is
refused there, as is a caller of the wrong kind for the flow (a backend-only route, sign-in
without a user), since the limiter and the policy key on what was read. Provider calls made
after the gates (channel queries, user events) go through the circuit breaker publishing uses.

Clients' requests count against the `auth` rate; a backend's (its channel queries and user
events) against the `publish` rate, the budget of its publishes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgspec import Struct

from core.access import allowed
from core.errors import (
    BadRequest,
    Forbidden,
    InvalidChannel,
    NotSupported,
    TooManyItems,
    Unauthenticated,
)
from core.history import Page, refuse_encrypted
from core.policy import Action, AllowPresence
from core.provider import PresenceData
from core.validation import (
    ChannelKind,
    channel_kind,
    check_payload_size,
    encode_data,
    encode_user_info,
    validate_channel,
    validate_event_name,
    validate_socket_id,
    validate_user_id,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.breaker import CircuitBreaker
    from core.history import ChannelHistory
    from core.policy import Allow, Policy
    from core.principal import Principal
    from core.provider import Member, Occupancy, Provider
    from core.ratelimit import Kind, RateLimiter
    from core.settings import Settings

MAX_TOKEN_CHANNELS = 100


class Grant(Struct, frozen=True):
    """A subscription the gates let through; `presence` is who it joins a presence channel as."""

    channel: str
    presence: PresenceData | None = None


class Authorizer:
    """Subscriptions, sign-ins, tokens, streams, channel queries and user routes: the gates in
    order, then the provider's signature or call."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        provider: Provider,
        *,
        limiter: RateLimiter,
        breaker: CircuitBreaker,
        history: ChannelHistory | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.provider = provider
        self.limiter = limiter
        self.breaker = breaker
        self.channel_history = history

    # -- subscribing ------------------------------------------------------------------------
    async def authorize_subscription(
        self, principal: Principal, channel: object, *, client_ip: str | None = None
    ) -> Grant:
        """May `principal` subscribe to `channel`: the Grant, or raise the refusal (a RelayError:
        400 invalid-channel, 401, 403, 413 for a presence member over 1 KB, 429 with Retry-After).

        The entry point of socket sessions (WebSocket subscribe, API Gateway `$default`), which
        know their caller already: the signed-in user, or ANONYMOUS. Counts one `auth` request
        against the caller, `client_ip` and the channel's rule."""
        name = validate_channel(channel, self.provider.limits)
        (grant,) = await self._subscribe(principal, [name], client_ip)
        return grant

    async def authorize_channel(
        self,
        principal: Principal,
        *,
        socket_id: object,
        channel: object,
        client_ip: str | None,
        provider: object = None,
    ) -> dict[str, str]:
        """POST /auth/channel: the provider's signed answer for a private, presence or encrypted
        channel subscription; `provider` names which of two signs it (RELAY_SECONDARY_PROVIDER)."""
        socket = validate_socket_id(socket_id)
        name = validate_channel(channel, self.provider.limits)
        if not channel_kind(name).needs_auth:
            raise BadRequest("public channels need no authorization", channel=name)
        signer = self._signer(provider)
        (grant,) = await self._subscribe(principal, [name], client_ip)
        return signer.authorize_channel(socket_id=socket, channel=name, presence=grant.presence)

    async def authorize_stream(
        self, principal: Principal, channels: Sequence[str], *, client_ip: str | None
    ) -> list[Grant]:
        """GET /v1/stream: a Grant for every channel of one stream, or the first refusal (one
        refused channel refuses the stream). Opening a stream is one `auth` request."""
        limit = self.settings.max_subscriptions_per_connection
        if len(channels) > limit:
            raise TooManyItems(f"{len(channels)} channels given; the limit is {limit}", limit=limit)
        limits = self.provider.limits
        names = [validate_channel(c, limits) for c in dict.fromkeys(channels)]
        return await self._subscribe(principal, names, client_ip)

    async def _subscribe(
        self, principal: Principal, names: list[str], client_ip: str | None
    ) -> list[Grant]:
        found = [self.policy.match(name) for name in names]  # once per channel
        rules = {m.rule.index: (m.rule, 1) for m in found if m is not None}
        await self.limiter.check("auth", principal, client_ip, rules=rules.values())
        decisions = [
            allowed(self.policy.decide_matched(principal, Action.SUBSCRIBE, name, match), name)
            for name, match in zip(names, found, strict=True)
        ]
        return [_grant(name, d) for name, d in zip(names, decisions, strict=True)]

    # -- signing in, tokens -----------------------------------------------------------------
    async def authenticate_user(
        self,
        principal: Principal,
        *,
        socket_id: object,
        client_ip: str | None,
        provider: object = None,
    ) -> dict[str, str]:
        """POST /auth/user: the signed user data of a signed-in end user, for pusher:signin."""
        if not principal.is_user or principal.id is None:
            raise Unauthenticated("user authentication needs an end user's token")
        socket = validate_socket_id(socket_id)
        signer = self._signer(provider)
        await self.limiter.check("auth", principal, client_ip)
        info = {k: principal.claims[k] for k in ("name",) if k in principal.claims}
        encode_user_info(info)  # the size, before signing
        return signer.authenticate_user(
            socket_id=socket,
            user=PresenceData(principal.id, info),
            watchlist=watchlist_of(principal),
        )

    async def issue_token(
        self,
        principal: Principal,
        channels: Sequence[str],
        *,
        client_ip: str | None,
        provider: object = None,
    ) -> dict[str, Any]:
        """/auth/token: the provider's client token, granting what the policy allows (the
        provider compiles the policy into its grants); `channels` as the route documents."""
        if len(channels) > MAX_TOKEN_CHANNELS:
            raise TooManyItems(f"at most {MAX_TOKEN_CHANNELS} channels", limit=MAX_TOKEN_CHANNELS)
        limits = self.provider.limits
        names = [validate_channel(c, limits) for c in dict.fromkeys(channels)]
        signer = self._signer(provider)
        await self.limiter.check("auth", principal, client_ip)
        return await signer.issue_token(principal, self.policy, channels=names)

    def _signer(self, provider: object) -> Provider:
        """The provider a client named to sign its answer, or (None) the relay's own choice."""
        if provider is None:
            return self.provider
        found = self.provider.part(provider) if isinstance(provider, str) else None
        if found is None:
            names = ", ".join(p.name for p in self.provider.parts)
            raise BadRequest(f"provider must be one of: {names}")
        return found

    # -- channel queries --------------------------------------------------------------------
    async def occupancy(
        self, principal: Principal, channel: object, *, client_ip: str | None
    ) -> Occupancy:
        """Whether a channel has subscribers: for backends, and callers who may subscribe."""
        name = validate_channel(channel, self.provider.limits)
        await self._read(principal, Action.SUBSCRIBE, name, client_ip)
        return await self.breaker.call(lambda: self.provider.occupancy(name))

    async def members(
        self, principal: Principal, channel: object, *, client_ip: str | None
    ) -> list[Member]:
        """A presence channel's members: for backends, and users who may subscribe."""
        name = validate_channel(channel, self.provider.limits)
        if channel_kind(name) is not ChannelKind.PRESENCE:
            raise InvalidChannel("only presence- channels have members", channel=name)
        await self._read(principal, Action.SUBSCRIBE, name, client_ip)
        return await self.breaker.call(lambda: self.provider.members(name))

    async def history(
        self,
        principal: Principal,
        channel: object,
        *,
        limit: int,
        since: str | None = None,
        client_ip: str | None,
    ) -> Page:
        """A channel's recent messages, or those since an id: for backends, and callers the
        policy grants history. From the relay's store where it keeps the channel's history
        (core.history), else from the provider's own (Ably; the local provider's replay log).
        A `private-encrypted-` channel's is refused first, whatever the policy grants and the
        store or provider hold: 501 encrypted-channel-history."""
        name = validate_channel(channel, self.provider.limits)
        refuse_encrypted(name)
        await self._read(principal, Action.HISTORY, name, client_ip)
        kept = self.channel_history
        if kept is not None and kept.records(name):
            return await kept.read(name, since=since, limit=limit)
        if since is not None:
            raise NotSupported(
                "since= reads the history the relay keeps, and it keeps none here: the policy "
                "grants no history on this channel, or the provider keeps its own (Ably clients "
                "recover what they missed themselves)"
            )
        return Page(await self.breaker.call(lambda: self.provider.history(name, limit=limit)))

    async def _read(
        self, principal: Principal, action: Action, channel: str, client_ip: str | None
    ) -> None:
        """Backends read any channel's state; others as far as the policy lets them."""
        match = self.policy.match(channel)
        rules = () if match is None else ((match.rule, 1),)
        await self.limiter.check(_kind(principal), principal, client_ip, rules=rules)
        if not principal.is_backend:
            allowed(self.policy.decide_matched(principal, action, channel, match), channel)

    # -- users' connections (backends only) -------------------------------------------------
    async def send_to_user(
        self,
        principal: Principal,
        user_id: object,
        *,
        name: object,
        data: Any,
        client_ip: str | None,
    ) -> None:
        """Deliver an event to every connection signed in as the user."""
        _backend_only(principal)
        user = validate_user_id(user_id)
        event = validate_event_name(name, self.provider.limits)
        encoded = encode_data(data)
        check_payload_size(encoded, self.provider.limits)
        await self.limiter.check("publish", principal, client_ip)
        await self.breaker.call(lambda: self.provider.send_to_user(user, event, encoded))

    async def terminate_user(
        self, principal: Principal, user_id: object, *, client_ip: str | None
    ) -> None:
        """Close every connection signed in as the user."""
        _backend_only(principal)
        user = validate_user_id(user_id)
        await self.limiter.check("publish", principal, client_ip)
        await self.breaker.call(lambda: self.provider.terminate_user(user))


def _kind(principal: Principal) -> Kind:
    """Which rate a request counts against: a backend's budget, or a client's."""
    return "publish" if principal.is_backend else "auth"


def _backend_only(principal: Principal) -> None:
    if principal.is_backend:
        return
    if principal.is_user:
        raise Forbidden("only a backend (API key) may act on users' connections")
    raise Unauthenticated("send an API key")


def _grant(channel: str, decision: Allow | AllowPresence) -> Grant:
    """The Grant for an allowed subscription: on a presence channel, the member the policy
    names (size-checked), or 403 when it named none."""
    if channel_kind(channel) is not ChannelKind.PRESENCE:
        return Grant(channel)
    if not isinstance(decision, AllowPresence):
        raise Forbidden("presence channels need a signed-in user", channel=channel)
    encode_user_info(decision.user_info)
    return Grant(channel, PresenceData(decision.user_id, decision.user_info))


WATCHLIST_CLAIM = "watchlist"
MAX_WATCHLIST = 100  # Pusher's limit on the user ids one sign-in watches


def watchlist_of(principal: Principal) -> list[str]:
    """The user ids the token's `watchlist` claim names, for pusher:signin's user_data (Pusher's
    watchlist: the connection hears when each comes online or goes offline)."""
    raw = principal.claims.get(WATCHLIST_CLAIM, [])
    if not isinstance(raw, list) or len(raw) > MAX_WATCHLIST:
        raise BadRequest(f"the token's watchlist claim must list at most {MAX_WATCHLIST} user ids")
    ids: list[str] = []
    for item in raw:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not item:
            raise BadRequest("the token's watchlist claim must hold user ids (strings)")
        ids.append(item)
    return list(dict.fromkeys(ids))
