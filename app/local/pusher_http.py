"""The Pusher HTTP API subset (trigger, batch, channel queries) for Pusher's server SDKs."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request

from app.relay import relay_of
from core.errors import BadRequest, NotFound, TooManyItems
from core.principal import Principal, PrincipalKind
from core.publishing import EventRequest
from core.validation import ChannelKind, channel_kind, validate_channel
from providers.pusherproto import signing

if TYPE_CHECKING:
    from providers.local.provider import LocalProvider

# Pusher's own limits, whatever the relay's settings say: what works here works on Pusher.
PUSHER_MAX_CHANNELS_PER_TRIGGER = 100
PUSHER_MAX_BATCH_EVENTS = 10


def build_pusher_http_router(provider: LocalProvider) -> APIRouter:
    """Routes authenticated as Pusher signs requests: with the app key and secret."""
    router = APIRouter(tags=["pusher-http-api"])
    settings = provider.settings

    async def app_principal(request: Request, app_id: str) -> Principal:
        if not hmac.compare_digest(app_id.encode(), settings.app_id.encode()):
            raise NotFound("no app with that id")
        # The raw query, parsed once here: every pair, duplicates included, goes to the check.
        pairs = signing.query_pairs(request.scope.get("query_string", b""))
        body = await request.body()
        signing.verify_request(
            settings.app_key,
            provider.app_secret,
            request.method,
            request.url.path,
            pairs,
            body,
        )
        return Principal(PrincipalKind.BACKEND, id=f"app:{settings.app_key}")

    @router.post("/apps/{app_id}/events")
    async def pusher_events(app_id: str, request: Request) -> dict[str, Any]:
        """Pusher's trigger endpoint, so the official server SDKs publish here unchanged."""
        relay = relay_of(request)
        principal = await app_principal(request, app_id)
        body = _json_object(await request.body())
        channels = body.get("channels")
        if channels is None and "channel" in body:
            channels = [body["channel"]]
        if isinstance(channels, list) and len(channels) > PUSHER_MAX_CHANNELS_PER_TRIGGER:
            raise TooManyItems(
                f"{len(channels)} channels given; Pusher takes at most "
                f"{PUSHER_MAX_CHANNELS_PER_TRIGGER} per trigger",
                limit=PUSHER_MAX_CHANNELS_PER_TRIGGER,
            )
        event = EventRequest(body.get("name"), channels, body.get("data"), body.get("socket_id"))
        await relay.publisher.publish(principal, [event], client_ip=relay.client_ip(request))
        return {}

    @router.post("/apps/{app_id}/batch_events")
    async def pusher_batch(app_id: str, request: Request) -> dict[str, Any]:
        """Pusher's batch trigger endpoint."""
        relay = relay_of(request)
        principal = await app_principal(request, app_id)
        batch = _json_object(await request.body()).get("batch")
        if not isinstance(batch, list) or not all(isinstance(e, dict) for e in batch):
            raise BadRequest("batch must be a list of event objects")
        if len(batch) > PUSHER_MAX_BATCH_EVENTS:
            raise TooManyItems(
                f"{len(batch)} events given; Pusher takes at most {PUSHER_MAX_BATCH_EVENTS} "
                "per batch_events call",
                limit=PUSHER_MAX_BATCH_EVENTS,
            )
        events = [
            EventRequest(e.get("name"), [e.get("channel")], e.get("data"), e.get("socket_id"))
            for e in batch
        ]
        await relay.publisher.publish(
            principal, events, batch=True, client_ip=relay.client_ip(request)
        )
        return {"batch": [{} for _ in events]}

    @router.get("/apps/{app_id}/channels/{channel_name}")
    async def pusher_channel_info(
        app_id: str, channel_name: str, request: Request
    ) -> dict[str, Any]:
        """Pusher's channel query: occupied, and counts."""
        await app_principal(request, app_id)
        channel = validate_channel(channel_name, provider.limits)
        count = provider.hub.subscriber_count(channel)
        info: dict[str, Any] = {"occupied": count > 0, "subscription_count": count}
        if channel_kind(channel) is ChannelKind.PRESENCE:
            info["user_count"] = len(provider.hub.members(channel))
        return info

    @router.get("/apps/{app_id}/channels/{channel_name}/users")
    async def pusher_users(app_id: str, channel_name: str, request: Request) -> dict[str, Any]:
        """Pusher's presence users query."""
        await app_principal(request, app_id)
        channel = validate_channel(channel_name, provider.limits)
        return {"users": [{"id": m.user_id} for m in provider.hub.members(channel)]}

    return router


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the body is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise BadRequest("the body must be a JSON object")
    return parsed
