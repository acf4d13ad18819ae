"""The publish flow after identity: the events read, then the rate limit, the policy and the
schemas (the gates' order, as in core.authorizing), idempotency, history ids, and the provider
behind its circuit breaker; then the history records what the provider took (core.history)."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from msgspec import Struct

from core.access import allowed
from core.errors import RelayError, TooManyItems
from core.idempotency import fingerprint
from core.policy import Action
from core.provider import Message
from core.validation import (
    check_payload_size,
    encode_data,
    validate_channels,
    validate_event_name,
    validate_socket_id,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from core.breaker import CircuitBreaker
    from core.history import ChannelHistory
    from core.idempotency import Idempotency
    from core.policy import Policy
    from core.policy.rules import Rule
    from core.principal import Principal
    from core.provider import Provider, Receipt
    from core.ratelimit import RateLimiter
    from core.schemas import EventSchemas
    from core.settings import Settings


class EventRequest(Struct, frozen=True):
    """One event to one or more channels, as a caller asked for it."""

    name: object
    channels: object
    data: Any
    socket_id: object = None


class Outcome(Struct, frozen=True):
    """The answer to a publish, and whether it was replayed for a repeated Idempotency-Key."""

    answer: dict[str, Any]
    replayed: bool = False


class Publisher:
    """Checks every event through the gates, then hands them to the provider in one call."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        provider: Provider,
        *,
        schemas: EventSchemas,
        limiter: RateLimiter,
        idempotency: Idempotency,
        breaker: CircuitBreaker,
        history: ChannelHistory | None = None,
    ) -> None:
        self.settings = settings
        self.history = history
        self.policy = policy
        self.provider = provider
        self.schemas = schemas
        self.limiter = limiter
        self.idempotency = idempotency
        self.breaker = breaker

    async def publish(
        self,
        principal: Principal,
        requests: Sequence[EventRequest],
        *,
        batch: bool = False,
        idempotency_key: str | None = None,
        client_ip: str | None = None,
    ) -> Outcome:
        """Publish every event or none of them; all are checked before the provider sees any.

        After identity (the caller's): the events are read, then the rate limit, the policy and
        the schemas, as every flow's gates run (core.authorizing); each channel is matched
        against the policy once. Message ids are `<base>:<index>`, the base a hash of the caller
        and its Idempotency-Key when it gave one (a retry gets the same ids, so a provider with
        idempotent publishing drops a duplicate; another caller's same key never does),
        otherwise random. With `batch`, a refusal of one event names it: an `item` member (its
        index) and `batch item <index>: ` before the detail."""
        drafts = self._read(requests, batch=batch)
        first_item: dict[str, int] = {}  # each channel, and the first event that names it
        for index, d in enumerate(drafts):
            for channel in d.channels:
                first_item.setdefault(channel, index)
        found = {channel: self.policy.match(channel) for channel in first_item}  # once each
        per_rule: dict[int, tuple[Rule, int]] = {}
        for match in (found[channel] for d in drafts for channel in d.channels):
            if match is not None:
                count = per_rule.get(match.rule.index, (match.rule, 0))[1]
                per_rule[match.rule.index] = (match.rule, count + 1)
        cost = sum(len(d.channels) for d in drafts)
        rules = per_rule.values()
        await self.limiter.check("publish", principal, client_ip, cost=cost, rules=rules)
        for channel, match in found.items():
            decision = self.policy.decide_matched(principal, Action.PUBLISH, channel, match)
            with _refusal_of(first_item[channel], batch=batch):
                allowed(decision, channel)
        base = (
            uuid.uuid4().hex
            if idempotency_key is None
            else message_id_base(caller_scope(principal, client_ip), idempotency_key)
        )
        governs = {channel: None if m is None else m.rule for channel, m in found.items()}
        messages: list[Message] = []
        for index, d in enumerate(drafts):
            for channel in d.channels:
                match = found[channel]
                message_id = f"{base}:{len(messages)}"
                message = Message(channel, d.name, d.data, d.socket_id, message_id, json=d.json)
                with _refusal_of(index, batch=batch):
                    self.schemas.check_rule(None if match is None else match.rule, d.name, d.data)
                    if self.history is not None:
                        self.history.check_envelope(message, governs[channel])
                messages.append(message)

        async def deliver() -> dict[str, Any]:
            # Ids for the channels whose history the relay keeps (no store call for the others),
            # recorded once the provider took the messages: a failed publish is no history.
            history = self.history
            pending = None if history is None else await history.reserve(messages, governs)
            sent = messages if pending is None else pending.messages
            receipts = await self.breaker.call(lambda: self.provider.publish(sent))
            if history is not None and pending is not None and pending.logs:
                await history.commit(pending)
            return answer_of(receipts, self.provider.name)

        if idempotency_key is None:
            return Outcome(await deliver())
        request = fingerprint(
            orjson.dumps([(m.channel, m.name, m.data, m.socket_id) for m in messages])
        )
        answer, replayed = await self.idempotency.once(
            caller_scope(principal, client_ip),
            idempotency_key,
            request,
            deliver,
            resend_within=self.provider.limits.idempotent_ids_seconds,
        )
        return Outcome(answer, replayed)

    def _read(self, requests: Sequence[EventRequest], *, batch: bool) -> list[_Draft]:
        """Every event's name, channels, socket id and encoded data, checked against the
        provider's limits; raise on the first that is malformed."""
        if len(requests) > self.settings.max_batch_events:
            raise TooManyItems(
                f"{len(requests)} events given; the limit is {self.settings.max_batch_events}",
                limit=self.settings.max_batch_events,
            )
        limits = self.provider.limits
        drafts: list[_Draft] = []
        for index, request in enumerate(requests):
            with _refusal_of(index, batch=batch):
                name = validate_event_name(request.name, limits)
                channels = validate_channels(
                    request.channels, limits, max_count=self.settings.max_channels_per_event
                )
                socket_id = (
                    None if request.socket_id is None else validate_socket_id(request.socket_id)
                )
                data = encode_data(request.data)
                check_payload_size(data, limits)
            published_json = not isinstance(request.data, str)
            drafts.append(_Draft(name, channels, data, socket_id, published_json))
        return drafts


@contextmanager
def _refusal_of(index: int, *, batch: bool) -> Iterator[None]:
    """A refusal raised inside, said of event `index` when the events are a batch."""
    try:
        yield
    except RelayError as exc:
        if not batch:
            raise
        raise exc.of_batch_item(index) from exc


class _Draft(NamedTuple):
    """One event as read, before the gates."""

    name: str
    channels: list[str]
    data: str
    socket_id: str | None
    json: bool  # data was published as a non-string value, encoded here


def answer_of(receipts: Sequence[Receipt], provider: str) -> dict[str, Any]:
    """A publish's answer: the provider that took it, how many messages, and their receipts.

    Where two providers deliver (a pair), each receipt names its provider, `provider` is the
    first that took the messages, and `providers` says what each took: `{"accepted": n}`, and
    `failed` (the problem's slug) for one that did not take them."""
    if all(r.provider is None for r in receipts):
        return {
            "provider": provider,
            "accepted": len(receipts),
            "receipts": [{"channel": r.channel, "name": r.name, "id": r.id} for r in receipts],
        }
    providers: dict[str, dict[str, Any]] = {}
    for r in receipts:
        taken = providers.setdefault(str(r.provider), {"accepted": 0})
        if r.failed is None:
            taken["accepted"] += 1
        else:
            taken["failed"] = r.failed
    took = [name for name, taken in providers.items() if taken["accepted"]]
    return {
        "provider": took[0] if took else provider,
        "accepted": max((providers[name]["accepted"] for name in took), default=0),
        "receipts": [
            {"channel": r.channel, "name": r.name, "id": r.id, "provider": r.provider}
            for r in receipts
            if r.failed is None
        ],
        "providers": providers,
    }


def caller_scope(principal: Principal, client_ip: str | None) -> str:
    """Whose Idempotency-Keys these are: the principal, or an anonymous caller's address."""
    if principal.id:
        return f"{principal.kind}:{principal.id}"
    return f"{principal.kind}:ip:{client_ip}"


def message_id_base(scope: str, key: str) -> str:
    """The message-id base for one caller's key: 128 bits of SHA-256 over both."""
    return fingerprint(scope.encode(), key.encode())[:32]
