"""Publishing over REST: one event to many channels, or a batch of events."""

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from app.metrics import count_published
from app.relay import Relay, relay_of
from core.errors import BadRequest, NonFiniteNumber
from core.publishing import EventRequest
from core.validation import loads_json, validate_idempotency_key

_UNPARSED: Any = object()


class _FiniteJsonRequest(Request):
    """A request whose JSON body is parsed once, by loads_json."""

    parsed: Any = _UNPARSED

    async def json(self) -> Any:
        """The body, refusing NaN, Infinity and numbers too large for a double."""
        if self.parsed is _UNPARSED:
            self.parsed = loads_json(await self.body())
        return self.parsed


class FiniteJsonRoute(APIRoute):
    """A route whose JSON body may not hold NaN, Infinity or `1e400` (422 non-finite-number).

    The standard library parser FastAPI uses takes them, and they would travel as `null`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given a request that parses its body with loads_json."""
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            strict = _FiniteJsonRequest(request.scope, request.receive)
            if body := await strict.body():
                # Parsed before FastAPI reads the body, which would turn NonFiniteNumber into a
                # bare 400; FastAPI then takes this parse. Any other error, FastAPI reports.
                try:
                    await strict.json()
                except NonFiniteNumber as exc:
                    index = _non_finite_item(body) if self.endpoint is publish_batch else None
                    if index is None:
                        raise
                    raise exc.of_batch_item(index) from exc
                except (ValueError, RecursionError):
                    pass
            return await handle(strict)

        return handler


def _non_finite_item(body: bytes) -> int | None:
    """The index of the first batch event holding NaN, an infinity or `1e400`, if one does."""
    try:
        items = json.loads(body)["batch"]  # the standard parser takes them (1e400 as inf)
        for index, item in enumerate(items):
            try:
                loads_json(json.dumps(item))  # written back as NaN or Infinity, and refused
            except NonFiniteNumber:
                return index
    except (ValueError, RecursionError, TypeError, KeyError):
        pass
    return None


router = APIRouter(prefix="/v1", tags=["publish"], route_class=FiniteJsonRoute)


class Event(BaseModel):
    """An event for one channel (`channel`) or several (`channels`), not both."""

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
            raise BadRequest(
                "both `channel` and `channels` given: send `channel` for one channel or "
                "`channels` for several, not both"
            )
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
    # With RELAY_SECONDARY_PROVIDER: the provider that took it.
    provider: str | None = None


class Taken(BaseModel):
    """What one of two providers took (RELAY_SECONDARY_PROVIDER)."""

    accepted: int
    # The problem type's slug when this provider did not take the messages (mirror mode).
    failed: str | None = None


class Published(BaseModel):
    """The provider accepted every message listed."""

    provider: str
    accepted: int
    receipts: list[ReceiptOut]
    # With RELAY_SECONDARY_PROVIDER: what each provider took.
    providers: dict[str, Taken] | None = None


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            "A retry under the same key within 24 h publishes nothing and gets the first answer; "
            "message ids are derived from the caller and the key"
        ),
    ),
]


@router.post(
    "/events",
    summary="Publish one event to one or more channels",
    response_model_exclude_unset=True,
)
async def publish_event(
    event: Event,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Published:
    """Publish an event; 200 means the provider accepted it on every channel."""
    relay = relay_of(request)
    return await _publish(relay, request, response, [event.request()], idempotency_key)


@router.post("/batch", summary="Publish a batch of events", response_model_exclude_unset=True)
async def publish_batch(
    batch: Batch,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Published:
    """Publish every event of the batch, or none if any is refused (the refusal names the
    event: `item`, its index)."""
    relay = relay_of(request)
    requests = [EventRequest(i.name, [i.channel], i.data, i.socket_id) for i in batch.batch]
    return await _publish(relay, request, response, requests, idempotency_key, batch=True)


async def _publish(
    relay: Relay,
    request: Request,
    response: Response,
    requests: list[EventRequest],
    idempotency_key: str | None,
    *,
    batch: bool = False,
) -> Published:
    principal = await relay.identify(request)
    outcome = await relay.publisher.publish(
        principal,
        requests,
        batch=batch,
        idempotency_key=validate_idempotency_key(idempotency_key),
        client_ip=relay.client_ip(request),
    )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    count_published(request, outcome.answer, replayed=outcome.replayed)
    return Published.model_validate(outcome.answer)
