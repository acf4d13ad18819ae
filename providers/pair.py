"""Two providers as one (RELAY_SECONDARY_PROVIDER, docs/migrating.md), each behind its own
circuit breaker.

    mirror    every publish goes to both at once, and the answer says what each took: a publish
              is answered 2xx when at least one took it (the other's receipts name its failure),
              and an error only when neither did. User events go to both; queries merge both
              answers (members united by user id, subscription counts summed).
    failover  everything goes to the primary while its breaker is closed; a call it fails with a
              retryable error, or refuses while its breaker is open, goes to the secondary. The
              primary's breaker probes it after the cooldown, and calls return to it once a probe
              succeeds.

Client-facing answers (a Pusher channel signature, an Ably or Supabase token) come from the first
of the two that signs that kind; a client names the other with `?provider=` (core.authorizing).
Message ids are the same on both, so a provider that drops repeated ids drops a retry's repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

from core.breaker import CircuitBreaker
from core.errors import (
    NotSupported,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RelayError,
)
from core.provider import Limits, Member, Occupancy, Provider, Receipt

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from core.policy import Policy
    from core.principal import Principal
    from core.provider import CachedEvent, ChannelEvent, Message, PresenceData
    from core.settings import Settings

T = TypeVar("T")
Mode = Literal["mirror", "failover"]


class ProviderPair(Provider):
    """The primary and the secondary provider, delivering as the mode says."""

    name = "pair"

    def __init__(
        self,
        primary: Provider,
        secondary: Provider,
        *,
        mode: Mode,
        failures: int = 5,
        cooldown: float = 10.0,
    ) -> None:
        if primary.name == secondary.name:
            raise ValueError("a pair is two different providers")
        self.primary = primary
        self.secondary = secondary
        self.mode: Mode = mode
        self.breakers = {
            p.name: CircuitBreaker(failures=failures, cooldown=cooldown) for p in self.parts
        }
        self.limits = paired_limits(primary.limits, secondary.limits)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        raise TypeError("a pair is built from its two providers (providers.registry)")

    @property
    def parts(self) -> tuple[Provider, ...]:
        return (self.primary, self.secondary)

    @property
    def label(self) -> str:
        """`pusher+local`: how answers and logs name the pair."""
        return f"{self.primary.name}+{self.secondary.name}"

    # -- publishing ---------------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        if self.mode == "failover":
            part, took = await self._first(lambda p: p.publish(messages))
            return [_named(r, part.name) for r in took]
        outcomes = await self._both(lambda p: p.publish(messages))
        receipts: list[Receipt] = []
        for part, outcome in outcomes:
            if isinstance(outcome, RelayError):
                receipts += [
                    Receipt(m.channel, m.name, m.id, provider=part.name, failed=outcome.slug)
                    for m in messages
                ]
            else:
                receipts += [_named(r, part.name) for r in outcome]
        return receipts

    # -- signing for clients: the first that signs, unless the client names one ---------------
    def authorize_channel(
        self, *, socket_id: str, channel: str, presence: PresenceData | None
    ) -> dict[str, str]:
        return self._signer(
            lambda p: p.authorize_channel(socket_id=socket_id, channel=channel, presence=presence)
        )

    def authenticate_user(
        self, *, socket_id: str, user: PresenceData, watchlist: Sequence[str] = ()
    ) -> dict[str, str]:
        return self._signer(
            lambda p: p.authenticate_user(socket_id=socket_id, user=user, watchlist=watchlist)
        )

    async def issue_token(
        self, principal: Principal, policy: Policy, *, channels: Sequence[str] = ()
    ) -> dict[str, Any]:
        try:
            return await self.primary.issue_token(principal, policy, channels=channels)
        except NotSupported:
            return await self.secondary.issue_token(principal, policy, channels=channels)

    def _signer(self, sign: Callable[[Provider], dict[str, str]]) -> dict[str, str]:
        try:
            return sign(self.primary)
        except NotSupported:
            return sign(self.secondary)

    # -- queries ------------------------------------------------------------------------------
    async def members(self, channel: str) -> list[Member]:
        if self.mode == "failover":
            return (await self._first(lambda p: p.members(channel)))[1]
        found = _answers(await self._both(lambda p: p.members(channel)))
        united: dict[str, Member] = {}
        for members in found:
            for member in members:
                united.setdefault(member.user_id, member)
        return list(united.values())

    async def occupancy(self, channel: str) -> Occupancy:
        if self.mode == "failover":
            return (await self._first(lambda p: p.occupancy(channel)))[1]
        found = _answers(await self._both(lambda p: p.occupancy(channel)))
        merged = _merged(found)
        if merged.user_count is not None and len(found) > 1:
            # A user connected through both is one user: count the united members.
            with contextlib.suppress(RelayError):  # else the larger of the two counts stands
                merged = Occupancy(
                    merged.occupied, merged.subscription_count, len(await self.members(channel))
                )
        return merged

    async def channels(self, prefix: str = "") -> dict[str, Occupancy]:
        if self.mode == "failover":
            return (await self._first(lambda p: p.channels(prefix)))[1]
        found = _answers(await self._both(lambda p: p.channels(prefix)))
        names = dict.fromkeys(name for listing in found for name in listing)
        return {
            name: _merged([listing[name] for listing in found if name in listing]) for name in names
        }

    async def last_event(self, channel: str) -> CachedEvent | None:
        return (await self._first(lambda p: p.last_event(channel)))[1]

    async def history(self, channel: str, *, limit: int) -> list[Message]:
        return (await self._first(lambda p: p.history(channel, limit=limit)))[1]

    # -- users --------------------------------------------------------------------------------
    async def send_to_user(self, user_id: str, event: str, data: str) -> None:
        if self.mode == "failover":
            await self._first(lambda p: p.send_to_user(user_id, event, data))
        else:
            _answers(await self._both(lambda p: p.send_to_user(user_id, event, data)))

    async def terminate_user(self, user_id: str) -> None:
        if self.mode == "failover":
            await self._first(lambda p: p.terminate_user(user_id))
        else:
            _answers(await self._both(lambda p: p.terminate_user(user_id)))

    # -- life cycle ---------------------------------------------------------------------------
    async def check(self) -> str:
        said = []
        for part in self.parts:
            try:
                said.append(f"{part.name}: {await part.check()}")
            except NotSupported as exc:
                said.append(f"{part.name}: {exc.detail}")
        return "; ".join(said)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ChannelEvent]:
        raise NotSupported("a pair takes each provider's webhooks at /v1/webhooks/<provider>")

    def drain(self) -> None:
        for part in self.parts:
            part.drain()

    async def start(self) -> None:
        for part in self.parts:
            await part.start()

    async def aclose(self) -> None:
        for part in self.parts:
            await part.aclose()

    # -- routing ------------------------------------------------------------------------------
    async def _guarded(self, part: Provider, call: Callable[[Provider], Awaitable[T]]) -> T:
        return await self.breakers[part.name].call(lambda: call(part))

    async def _first(self, call: Callable[[Provider], Awaitable[T]]) -> tuple[Provider, T]:
        """The primary's answer, or the secondary's where the primary failed retryably (or
        fails fast behind its open breaker) or cannot do this at all."""
        try:
            return self.primary, await self._guarded(self.primary, call)
        except NotSupported as exc:
            first: RelayError = exc
        except ProviderError as exc:
            if not exc.retryable:
                raise
            first = exc
        try:
            return self.secondary, await self._guarded(self.secondary, call)
        except NotSupported:
            raise first from None
        except ProviderError as exc:
            if isinstance(first, NotSupported):
                raise
            raise neither([(self.primary.name, first), (self.secondary.name, exc)]) from None

    async def _both(
        self, call: Callable[[Provider], Awaitable[T]]
    ) -> list[tuple[Provider, T | RelayError]]:
        """Each part's answer or refusal, called at once; an unexpected error is raised."""
        outcomes = await asyncio.gather(
            *(self._guarded(part, call) for part in self.parts), return_exceptions=True
        )
        paired: list[tuple[Provider, T | RelayError]] = []
        for part, outcome in zip(self.parts, outcomes, strict=True):
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, ProviderError | NotSupported
            ):
                raise outcome
            paired.append((part, outcome))
        if all(isinstance(o, RelayError) for _, o in paired):
            failed = [(p.name, o) for p, o in paired if isinstance(o, ProviderError)]
            if not failed:  # neither can do this
                raise next(o for _, o in paired if isinstance(o, RelayError))
            raise neither(failed)
        return paired


def _named(receipt: Receipt, provider: str) -> Receipt:
    return Receipt(receipt.channel, receipt.name, receipt.id, provider=provider)


def _answers(outcomes: list[tuple[Provider, T | RelayError]]) -> list[T]:
    """The answers of the parts that gave one (`_both` raised if none did)."""
    return [o for _, o in outcomes if not isinstance(o, RelayError)]


def _merged(found: Sequence[Occupancy]) -> Occupancy:
    """One channel's occupancy on both: occupied on either, subscriptions summed, the larger
    user count (the same user may be connected through both)."""
    counts = [o.subscription_count for o in found if o.subscription_count is not None]
    users = [o.user_count for o in found if o.user_count is not None]
    return Occupancy(
        occupied=any(o.occupied for o in found),
        subscription_count=sum(counts) if counts else None,
        user_count=max(users) if users else None,
    )


def neither(failures: Sequence[tuple[str, RelayError]]) -> ProviderError:
    """The error of a call neither provider took, naming each one's failure: a timeout when
    either may have taken it, unavailable when trying again may help."""
    detail = "; ".join(f"{name}: {exc.detail}" for name, exc in failures)
    errors = [exc for _, exc in failures]
    if any(isinstance(e, ProviderTimeout) for e in errors):
        return ProviderTimeout(detail)
    if any(isinstance(e, ProviderError) and e.retryable for e in errors):
        wait = max((e.retry_after for e in errors if isinstance(e, ProviderUnavailable)), default=1)
        return ProviderUnavailable(detail, retry_after=wait)
    return ProviderError(detail)


def paired_limits(a: Limits, b: Limits) -> Limits:
    """What both providers take: the smaller of each size, a capability only where both have it."""
    if a.supports_encrypted_channels and b.supports_encrypted_channels:
        variable = None
    else:
        variable = (b if a.supports_encrypted_channels else a).encryption_key_variable
    return Limits(
        max_payload_bytes=min(a.max_payload_bytes, b.max_payload_bytes),
        max_channel_name=min(a.max_channel_name, b.max_channel_name),
        max_event_name=min(a.max_event_name, b.max_event_name),
        supports_encrypted_channels=a.supports_encrypted_channels and b.supports_encrypted_channels,
        encryption_key_variable=variable,
        idempotent_ids_seconds=min(a.idempotent_ids_seconds, b.idempotent_ids_seconds),
        keeps_history=a.keeps_history and b.keeps_history,
    )
