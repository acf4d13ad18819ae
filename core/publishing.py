"""The publish flow after identity: policy, validation and limits, rate limits, idempotency,
then the provider behind its circuit breaker."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson
from msgspec import Struct

from core.access import require
from core.errors import TooManyItems
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
    from collections.abc import Sequence

    from core.breaker import CircuitBreaker
    from core.idempotency import Idempotency
    from core.policy import Policy
    from core.policy.rules import Rule
    from core.principal import Principal
    from core.provider import Provider
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
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.provider = provider
        self.schemas = schemas
        self.limiter = limiter
        self.idempotency = idempotency
        self.breaker = breaker

    def prepare(
        self,
        principal: Principal,
        requests: Sequence[EventRequest],
        *,
        idempotency_key: str | None = None,
        client_ip: str | None = None,
    ) -> list[Message]:
        """Validate and authorize every event; raise on the first refusal, before any delivery.

        Message ids are `<base>:<index>`, the base a hash of the caller and its Idempotency-Key
        when it gave one (a retry gets the same ids, so a provider with idempotent publishing
        drops a duplicate; another caller's same key never does), otherwise random."""
        if len(requests) > self.settings.max_batch_events:
            raise TooManyItems(
                f"{len(requests)} events given; the limit is {self.settings.max_batch_events}",
                limit=self.settings.max_batch_events,
            )
        base = (
            uuid.uuid4().hex
            if idempotency_key is None
            else message_id_base(caller_scope(principal, client_ip), idempotency_key)
        )
        limits = self.provider.limits
        messages: list[Message] = []
        for request in requests:
            name = validate_event_name(request.name, limits)
            channels = validate_channels(
                request.channels, limits, max_count=self.settings.max_channels_per_event
            )
            socket_id = None if request.socket_id is None else validate_socket_id(request.socket_id)
            data = encode_data(request.data)
            check_payload_size(data, limits)
            for channel in channels:
                require(self.policy, principal, Action.PUBLISH, channel)
                self.schemas.check(channel, name, data)
                message_id = f"{base}:{len(messages)}"
                messages.append(Message(channel, name, data, socket_id, message_id))
        return messages

    async def publish(
        self,
        principal: Principal,
        requests: Sequence[EventRequest],
        *,
        idempotency_key: str | None = None,
        client_ip: str | None = None,
    ) -> Outcome:
        """Publish every event or none of them; all are checked before the provider sees any."""
        messages = self.prepare(
            principal, requests, idempotency_key=idempotency_key, client_ip=client_ip
        )
        per_rule: dict[int, tuple[Rule, int]] = {}
        for m in messages:
            rule = self.policy.rule_for(m.channel)
            if rule is not None:
                per_rule[rule.index] = (rule, per_rule.get(rule.index, (rule, 0))[1] + 1)
        await self.limiter.check(
            "publish", principal, client_ip, cost=len(messages), rules=per_rule.values()
        )

        async def deliver() -> dict[str, Any]:
            receipts = await self.breaker.call(lambda: self.provider.publish(messages))
            return {
                "provider": self.provider.name,
                "accepted": len(receipts),
                "receipts": [{"channel": r.channel, "name": r.name, "id": r.id} for r in receipts],
            }

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


def caller_scope(principal: Principal, client_ip: str | None) -> str:
    """Whose Idempotency-Keys these are: the principal, or an anonymous caller's address."""
    if principal.id:
        return f"{principal.kind}:{principal.id}"
    return f"{principal.kind}:ip:{client_ip}"


def message_id_base(scope: str, key: str) -> str:
    """The message-id base for one caller's key: 128 bits of SHA-256 over both."""
    return fingerprint(scope.encode(), key.encode())[:32]
