"""The Pusher HTTP API, as Pusher documents it, for the providers that are their own Pusher server
(local, apigateway): what Pusher's server SDKs call works here unchanged (docs/pusher-http-api.md).

    POST /apps/{id}/events                  publish (info: the channels' attributes); a
                                            `#server-to-user-<id>` channel sends to that user
    POST /apps/{id}/batch_events            publish up to 10 events, whole or not at all
    GET  /apps/{id}/channels                occupied channels (filter_by_prefix, info=user_count)
    GET  /apps/{id}/channels/{name}         occupied, info=subscription_count,user_count,cache
    GET  /apps/{id}/channels/{name}/users   a presence channel's users
    POST /apps/{id}/users/{user}/terminate_connections   (the Node SDK's path)
    POST /users/{user}/terminate_connections             (the Python SDK's path)

Every call is signed as Pusher signs it; the query is normalized once (signing.normalize_query)
and both the signature check and the route read that one form. Publishes go through the
publishing service, queries and user actions through the authorizing service, so every gate
runs as for /v1; what the provider cannot do answers 501 not-supported.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from fastapi import APIRouter, Request, Response

from app.direct import json_answer
from app.metrics import count_published
from app.relay import relay_of
from core.errors import BadRequest, InvalidChannel, NotFound, NotSupported, TooManyItems
from core.principal import Principal, PrincipalKind
from core.provider import Limits
from core.publishing import EventRequest
from core.validation import (
    ChannelKind,
    channel_kind,
    check_payload_size,
    encode_data,
    validate_channel,
    validate_event_name,
)
from providers.pusherproto import signing
from providers.pusherproto.cache import is_cache_channel

if TYPE_CHECKING:
    from app.direct import Endpoint
    from app.relay import Relay
    from core.provider import Occupancy
    from core.settings import Settings

# Pusher's own limits, whatever the relay's settings say: what works here works on Pusher.
PUSHER_MAX_CHANNELS_PER_TRIGGER = 100
PUSHER_MAX_BATCH_EVENTS = 10
PUSHER_LIMITS = Limits(max_payload_bytes=10_240, max_channel_name=164, max_event_name=200)
SERVER_TO_USER_PREFIX = "#server-to-user-"
USER_COUNT = "user_count"
SUBSCRIPTION_COUNT = "subscription_count"
CACHE = "cache"
_EVENT_INFO = frozenset({USER_COUNT, SUBSCRIPTION_COUNT})
_CHANNEL_INFO = frozenset({USER_COUNT, SUBSCRIPTION_COUNT, CACHE})


class PusherHttp(NamedTuple):
    """The routes, and the publishing ones Front serves itself (app.direct) at this app's path."""

    router: APIRouter
    direct: dict[tuple[str, str], Endpoint]


def build_pusher_http_router(settings: Settings) -> PusherHttp:
    """Routes authenticated as Pusher signs requests: with the app key and secret.

    The two publishing routes, the busiest, are also served below FastAPI's routing (app.direct)
    at `/apps/<RELAY_APP_ID>/...`: FastAPI's routing and request handling were about a third of
    a publish's CPU (bench/README.md). Another app id reaches the FastAPI route, and its 404."""
    router = APIRouter(tags=["pusher-http-api"])

    async def signed(request: Request, app_id: str | None) -> dict[str, str]:
        """Check the app id (when the path names one) and the signature; the normalized query."""
        if app_id is not None and not hmac.compare_digest(
            app_id.encode(), settings.app_id.encode()
        ):
            raise NotFound("no app with that id")
        params = signing.normalize_query(
            signing.query_pairs(request.scope.get("query_string", b""))
        )
        signing.verify_request(
            settings.app_key,
            settings.app_secret.get_secret_value(),
            request.method,
            request.url.path,
            list(params.items()),
            await request.body(),
        )
        return params

    principal = principal_of_app(settings)

    async def events(request: Request, app_id: str) -> dict[str, Any]:
        relay = relay_of(request)
        await signed(request, app_id)
        body = _json_object(await request.body())
        info = _info(body.get("info"), _EVENT_INFO)
        channels = body.get("channels")
        if channels is None and "channel" in body:
            channels = [body["channel"]]
        if isinstance(channels, list) and len(channels) > PUSHER_MAX_CHANNELS_PER_TRIGGER:
            raise TooManyItems(
                f"{len(channels)} channels given; Pusher takes at most "
                f"{PUSHER_MAX_CHANNELS_PER_TRIGGER} per trigger",
                limit=PUSHER_MAX_CHANNELS_PER_TRIGGER,
            )
        users = _server_to_user(channels)
        if users is not None:
            await _send_to_user(relay, request, users, body)
            return {"channels": {c: {} for c in users}} if info else {}
        event = _pusher_event(relay, body, channels)
        outcome = await relay.publisher.publish(
            principal, [event], client_ip=relay.client_ip(request)
        )
        count_published(request, outcome.answer, replayed=outcome.replayed)
        if not info:
            return {}
        assert isinstance(channels, list)  # the publisher refused anything else
        names = list(dict.fromkeys(channels))
        found = await _occupancies(relay, request, names)
        return {"channels": {c: _attributes(c, o, info) for c, o in zip(names, found, strict=True)}}

    async def batch_events(request: Request, app_id: str) -> dict[str, Any]:
        relay = relay_of(request)
        await signed(request, app_id)
        batch = _json_object(await request.body()).get("batch")
        if not isinstance(batch, list) or not all(isinstance(e, dict) for e in batch):
            raise BadRequest("batch must be a list of event objects")
        if len(batch) > PUSHER_MAX_BATCH_EVENTS:
            raise TooManyItems(
                f"{len(batch)} events given; Pusher takes at most {PUSHER_MAX_BATCH_EVENTS} "
                "per batch_events call",
                limit=PUSHER_MAX_BATCH_EVENTS,
            )
        infos: list[frozenset[str]] = []
        events: list[EventRequest] = []
        for index, e in enumerate(batch):
            try:
                infos.append(_info(e.get("info"), _EVENT_INFO))
                if _server_to_user([e.get("channel")]) is not None:
                    raise InvalidChannel(
                        "send to a user with POST /apps/{app_id}/events (the SDKs' sendToUser), "
                        "not in a batch"
                    )
                events.append(_pusher_event(relay, e, [e.get("channel")]))
            except BadRequest as exc:
                raise exc.of_batch_item(index) from exc
        outcome = await relay.publisher.publish(
            principal, events, batch=True, client_ip=relay.client_ip(request)
        )
        count_published(request, outcome.answer, replayed=outcome.replayed)
        if not any(infos):  # one empty hash per event, as before info existed
            return {"batch": [{} for _ in events]}
        wanted = [str(e.get("channel")) for e, i in zip(batch, infos, strict=True) if i]
        names = list(dict.fromkeys(wanted))
        found = dict(zip(names, await _occupancies(relay, request, names), strict=True))
        return {
            "batch": [
                _attributes(str(e.get("channel")), found[str(e.get("channel"))], i) if i else {}
                for e, i in zip(batch, infos, strict=True)
            ]
        }

    @router.post("/apps/{app_id}/events")
    async def pusher_events(app_id: str, request: Request) -> dict[str, Any]:
        """Pusher's trigger; with `info`, each channel's attributes as Pusher answers them."""
        return await events(request, app_id)

    @router.post("/apps/{app_id}/batch_events")
    async def pusher_batch(app_id: str, request: Request) -> dict[str, Any]:
        """Pusher's batch trigger; with `info` on any event, each event's channel attributes."""
        return await batch_events(request, app_id)

    async def direct_events(request: Request) -> Response:
        return json_answer(await events(request, settings.app_id))

    async def direct_batch(request: Request) -> Response:
        return json_answer(await batch_events(request, settings.app_id))

    @router.get("/apps/{app_id}/channels")
    async def pusher_channels(app_id: str, request: Request) -> dict[str, Any]:
        """Pusher's occupied channels; user_count only with a presence- prefix, as Pusher asks."""
        relay = relay_of(request)
        params = await signed(request, app_id)
        prefix = params.get("filter_by_prefix", "")
        info = _info(params.get("info"), _EVENT_INFO)
        if USER_COUNT in info and not prefix.startswith("presence-"):
            raise BadRequest(
                "info=user_count needs filter_by_prefix=presence- (user_count exists only for "
                "presence channels)"
            )
        await relay.authorizer.limiter.check("publish", principal, relay.client_ip(request))
        found = await relay.breaker.call(lambda: relay.provider.channels(prefix))
        return {"channels": {c: _attributes(c, o, info) for c, o in sorted(found.items())}}

    @router.get("/apps/{app_id}/channels/{channel_name}")
    async def pusher_channel_info(
        app_id: str, channel_name: str, request: Request
    ) -> dict[str, Any]:
        """Pusher's channel query: `occupied`, and the attributes `info` asks for."""
        relay = relay_of(request)
        params = await signed(request, app_id)
        info = _info(params.get("info"), _CHANNEL_INFO)
        channel = validate_channel(channel_name, relay.provider.limits)
        if USER_COUNT in info and channel_kind(channel) is not ChannelKind.PRESENCE:
            raise BadRequest("info=user_count is only for presence- channels")
        found = await relay.authorizer.occupancy(
            principal, channel, client_ip=relay.client_ip(request)
        )
        answer = {"occupied": found.occupied, **_attributes(channel, found, info)}
        if CACHE in info and is_cache_channel(channel):
            answer.update(await _cache(relay, channel))
        return answer

    @router.get("/apps/{app_id}/channels/{channel_name}/users")
    async def pusher_users(app_id: str, channel_name: str, request: Request) -> dict[str, Any]:
        """Pusher's presence users query (400 for a channel that is not presence-)."""
        relay = relay_of(request)
        await signed(request, app_id)
        found = await relay.authorizer.members(
            principal, channel_name, client_ip=relay.client_ip(request)
        )
        return {"users": [{"id": m.user_id} for m in found]}

    async def terminate(request: Request, app_id: str | None, user_id: str) -> dict[str, Any]:
        relay = relay_of(request)
        await signed(request, app_id)
        await relay.authorizer.terminate_user(
            principal, user_id, client_ip=relay.client_ip(request)
        )
        return {}

    @router.post("/apps/{app_id}/users/{user_id}/terminate_connections")
    async def pusher_terminate(app_id: str, user_id: str, request: Request) -> dict[str, Any]:
        """Close every connection signed in as the user (the Node SDK's path)."""
        return await terminate(request, app_id, user_id)

    @router.post("/users/{user_id}/terminate_connections")
    async def pusher_terminate_unprefixed(user_id: str, request: Request) -> dict[str, Any]:
        """The same, on the path the Python SDK posts (no /apps/{id}: the key names the app)."""
        return await terminate(request, None, user_id)

    prefix = f"/apps/{settings.app_id}"
    direct: dict[tuple[str, str], Endpoint] = {
        ("POST", f"{prefix}/events"): direct_events,
        ("POST", f"{prefix}/batch_events"): direct_batch,
    }
    return PusherHttp(router, direct)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the body is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise BadRequest("the body must be a JSON object")
    return parsed


def _info(raw: object, known: frozenset[str]) -> frozenset[str]:
    """The attributes a comma-separated `info` asks for; 400 for one Pusher does not define."""
    if raw is None or raw == "":
        return frozenset()
    if not isinstance(raw, str):
        raise BadRequest("info must be a comma-separated string of attribute names")
    asked = frozenset(a.strip() for a in raw.split(",") if a.strip())
    unknown = sorted(asked - known)
    if unknown:
        raise BadRequest(
            f"unknown info attribute {unknown[0][:40]!r}; known: {', '.join(sorted(known))}"
        )
    return asked


def _attributes(channel: str, found: Occupancy, info: frozenset[str]) -> dict[str, int]:
    """The attributes asked for that the channel has (user_count on presence channels only)."""
    attributes: dict[str, int] = {}
    if SUBSCRIPTION_COUNT in info and found.subscription_count is not None:
        attributes[SUBSCRIPTION_COUNT] = found.subscription_count
    presence = channel_kind(channel) is ChannelKind.PRESENCE
    if USER_COUNT in info and presence and found.user_count is not None:
        attributes[USER_COUNT] = found.user_count
    return attributes


def pusher_limits(provider: Limits) -> Limits:
    """Pusher's limits, or the provider's where they are tighter (and its encrypted channels)."""
    return Limits(
        max_payload_bytes=min(PUSHER_LIMITS.max_payload_bytes, provider.max_payload_bytes),
        max_channel_name=min(PUSHER_LIMITS.max_channel_name, provider.max_channel_name),
        max_event_name=min(PUSHER_LIMITS.max_event_name, provider.max_event_name),
        supports_encrypted_channels=provider.supports_encrypted_channels,
    )


def _pusher_event(relay: Relay, body: dict[str, Any], channels: object) -> EventRequest:
    """One event, held to Pusher's own limits before the publisher's checks (which refuse
    what is not a list of channel names)."""
    limits = pusher_limits(relay.provider.limits)
    if isinstance(channels, list):
        for channel in channels:
            validate_channel(channel, limits)
    _check_event(body, limits)
    return EventRequest(body.get("name"), channels, body.get("data"), body.get("socket_id"))


def _check_event(body: dict[str, Any], limits: Limits) -> None:
    validate_event_name(body.get("name"), limits)
    check_payload_size(encode_data(body.get("data")), limits)


def _server_to_user(channels: object) -> list[str] | None:
    """The `#server-to-user-` channels of a trigger (the SDKs' sendToUser), None when there are
    none; such a channel must be the trigger's only kind of channel."""
    if not isinstance(channels, list):
        return None
    users = [c for c in channels if isinstance(c, str) and c.startswith(SERVER_TO_USER_PREFIX)]
    if not users:
        return None
    if len(users) != len(channels):
        raise InvalidChannel(
            "a #server-to-user- channel cannot be triggered with other channels: send to the "
            "user and publish to the channels in separate calls"
        )
    return list(dict.fromkeys(users))


async def _send_to_user(
    relay: Relay, request: Request, channels: list[str], body: dict[str, Any]
) -> None:
    """Deliver to each user named by a `#server-to-user-<id>` channel (the authorizing service
    checks the user id, the event name and the data's size)."""
    _check_event(body, pusher_limits(relay.provider.limits))
    for channel in channels:
        await relay.authorizer.send_to_user(
            principal_of_app(relay.settings),
            channel.removeprefix(SERVER_TO_USER_PREFIX),
            name=body.get("name"),
            data=body.get("data"),
            client_ip=relay.client_ip(request),
        )


def principal_of_app(settings: Settings) -> Principal:
    """The backend that signed a Pusher HTTP API call with the app's key and secret."""
    return Principal(PrincipalKind.BACKEND, id=f"app:{settings.app_key}")


async def _occupancies(relay: Relay, request: Request, channels: list[str]) -> list[Occupancy]:
    """Each channel's occupancy, through the authorizing service (one query per channel)."""
    client_ip = relay.client_ip(request)
    principal = principal_of_app(relay.settings)
    return list(
        await asyncio.gather(
            *(relay.authorizer.occupancy(principal, c, client_ip=client_ip) for c in channels)
        )
    )


async def _cache(relay: Relay, channel: str) -> dict[str, Any]:
    """`cache` for info=cache: the channel's kept event and its seconds left, as soketi and
    sockudo answer it; nothing while the provider keeps no cache channel events."""
    try:
        kept = await relay.breaker.call(lambda: relay.provider.last_event(channel))
    except NotSupported:
        return {}
    if kept is None:
        return {}
    data = orjson.dumps({"event": kept.event, "data": kept.data}).decode()
    return {CACHE: {"data": data, "ttl": kept.ttl}}
