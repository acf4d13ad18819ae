"""Publishing over REST: one event to many channels, or a batch of events."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from app.errors import InvalidChannel
from app.publishing import EventRequest
from app.relay import Relay, get_relay
from app.validation import validate_idempotency_key
from providers.base import Receipt

router = APIRouter(prefix="/v1", tags=["publish"])


class Event(BaseModel):
    """An event for one channel (`channel`) or several (`channels`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="Event name; `client-`, `pusher:` and `pusher_internal:` are reserved"
    )
    channel: str | None = Field(default=None, description="One channel")
    channels: list[str] | None = Field(default=None, description="Several channels")
    data: Any = Field(description="A string, or any JSON value (sent JSON-encoded)")
    socket_id: str | None = Field(default=None, description="Connection that must not receive it")

    def request(self) -> EventRequest:
        """As the publisher takes it."""
        if self.channel is not None and self.channels is not None:
            raise InvalidChannel("give `channel` or `channels`, not both")
        channels = [self.channel] if self.channel is not None else self.channels
        return EventRequest(self.name, channels, self.data, self.socket_id)


class BatchItem(BaseModel):
    """One event of a batch, for exactly one channel."""

    model_config = ConfigDict(extra="forbid")

    name: str
    channel: str
    data: Any
    socket_id: str | None = None


class Batch(BaseModel):
    """Several events, published together."""

    model_config = ConfigDict(extra="forbid")

    batch: list[BatchItem]


class ReceiptOut(BaseModel):
    """One message the provider accepted."""

    channel: str
    name: str
    id: str | None


class Published(BaseModel):
    """The provider accepted every message listed."""

    provider: str
    accepted: int
    receipts: list[ReceiptOut]


def _published(relay: Relay, receipts: list[Receipt]) -> Published:
    return Published(
        provider=relay.provider.name,
        accepted=len(receipts),
        receipts=[ReceiptOut(channel=r.channel, name=r.name, id=r.id) for r in receipts],
    )


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Message ids become `<key>:<index>`, so retries are not published twice",
    ),
]


@router.post("/events", summary="Publish one event to one or more channels")
async def publish_event(
    event: Event,
    request: Request,
    relay: Annotated[Relay, Depends(get_relay)],
    idempotency_key: IdempotencyKey = None,
) -> Published:
    """Publish an event; 200 means the provider accepted it on every channel."""
    principal = await relay.identify(request)
    key = validate_idempotency_key(idempotency_key)
    receipts = await relay.publisher.publish(principal, [event.request()], idempotency_key=key)
    return _published(relay, receipts)


@router.post("/batch", summary="Publish a batch of events")
async def publish_batch(
    batch: Batch,
    request: Request,
    relay: Annotated[Relay, Depends(get_relay)],
    idempotency_key: IdempotencyKey = None,
) -> Published:
    """Publish every event of the batch, or none if any is refused."""
    principal = await relay.identify(request)
    key = validate_idempotency_key(idempotency_key)
    requests = [EventRequest(i.name, [i.channel], i.data, i.socket_id) for i in batch.batch]
    receipts = await relay.publisher.publish(principal, requests, idempotency_key=key)
    return _published(relay, receipts)
