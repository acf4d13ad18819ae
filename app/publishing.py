"""The publish flow after identity: policy, validation and limits, then the provider."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.access import require
from app.errors import TooManyItems
from app.policy import Action
from app.validation import (
    check_payload_size,
    encode_data,
    validate_channels,
    validate_event_name,
    validate_socket_id,
)
from providers.base import Message, Receipt

if TYPE_CHECKING:
    from collections.abc import Sequence

    from app.policy import Policy
    from app.principal import Principal
    from app.settings import Settings
    from providers.base import Provider


@dataclass(frozen=True, slots=True)
class EventRequest:
    """One event to one or more channels, as a caller asked for it."""

    name: object
    channels: object
    data: Any
    socket_id: object = None


class Publisher:
    """Checks every event through the gates, then hands it to the provider in one call."""

    def __init__(self, settings: Settings, policy: Policy, provider: Provider) -> None:
        self.settings = settings
        self.policy = policy
        self.provider = provider

    def prepare(
        self,
        principal: Principal,
        requests: Sequence[EventRequest],
        *,
        idempotency_key: str | None = None,
    ) -> list[Message]:
        """Validate and authorize every event; raise on the first refusal, before any delivery.

        Message ids are `<Idempotency-Key>:<index>` when the caller gave a key, so a provider
        with idempotent publishing (Ably) drops a retried duplicate; otherwise random."""
        base = uuid.uuid4().hex if idempotency_key is None else idempotency_key
        if len(requests) > self.settings.max_batch_events:
            raise TooManyItems(
                f"{len(requests)} events given; the limit is {self.settings.max_batch_events}",
                limit=self.settings.max_batch_events,
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
                message_id = f"{base}:{len(messages)}"
                messages.append(Message(channel, name, data, socket_id, message_id))
        return messages

    async def publish(
        self,
        principal: Principal,
        requests: Sequence[EventRequest],
        *,
        idempotency_key: str | None = None,
    ) -> list[Receipt]:
        """Publish every event or none: all are checked before the provider sees any."""
        messages = self.prepare(principal, requests, idempotency_key=idempotency_key)
        return await self.provider.publish(messages)
