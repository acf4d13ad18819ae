"""Inbound provider webhooks: verified by the provider, normalized into the relay's schema, and
forwarded to the app's backend through the outbound webhooks' sink (when RELAY_WEBHOOK_URL is
set), in the relay's one format whichever provider sent them."""

import logging

from fastapi import APIRouter, Request
from msgspec.structs import asdict
from pydantic import BaseModel

from app.relay import relay_of
from core.errors import NotFound
from core.webhooks.sink import emit, settle

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)


class ChannelEventOut(BaseModel):
    """One normalized webhook event."""

    kind: str
    channel: str
    time_ms: int
    user_id: str | None = None
    event: str | None = None
    data: str | None = None
    socket_id: str | None = None


class Received(BaseModel):
    """The webhook verified; its events, normalized."""

    provider: str
    events: list[ChannelEventOut]


@router.post("/{provider}", summary="Receive a provider webhook")
async def receive(provider: str, request: Request) -> Received:
    """Verify the signature first (401 and no effect if it fails), then normalize and forward."""
    relay = relay_of(request)
    sender = relay.provider.part(provider)
    if sender is None:
        names = " and ".join(repr(p.name) for p in relay.provider.parts)
        raise NotFound(f"this relay takes webhooks from {names} only")
    body = await request.body()
    events = sender.parse_webhook(request.headers, body)
    for e in events:
        log.info("webhook %s: %s on %s", provider, e.kind, e.channel)
    if events:
        emit(events)
        await settle()  # queued before the provider hears 200 (on Lambda: sent to SQS)
    return Received(
        provider=provider,
        events=[ChannelEventOut(**asdict(e)) for e in events],
    )
