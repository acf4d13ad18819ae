"""Client authorization: pusher-js channelAuthorization and userAuthentication endpoints."""

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from app.forms import read_fields
from app.relay import relay_of
from core.access import require
from core.errors import BadRequest, Forbidden, TooManyItems, Unauthenticated
from core.policy import Action, AllowPresence
from core.provider import PresenceData
from core.validation import (
    ChannelKind,
    channel_kind,
    encode_user_info,
    validate_channel,
    validate_socket_id,
)

router = APIRouter(tags=["auth"])


def json_answer(answer: dict[str, str]) -> Response:
    """The signed answer as JSON, serialized once here: the route's `response_model` documents
    it, and FastAPI's own validation and encoding of a dict of strings would only repeat work
    on the relay's busiest route."""
    return Response(orjson.dumps(answer), media_type="application/json")


_FORM_BODY = {
    "requestBody": {
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["socket_id", "channel_name"],
                    "properties": {
                        "socket_id": {"type": "string", "example": "1234.5678"},
                        "channel_name": {"type": "string", "example": "private-user-42"},
                    },
                }
            },
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ChannelAuthRequest"},
            },
        }
    }
}


@router.post(
    "/auth/channel",
    summary="Authorize a channel subscription (pusher-js channelAuthorization)",
    openapi_extra=_FORM_BODY,
    response_model=dict[str, str],
)
async def authorize_channel(request: Request) -> Response:
    """Sign a private, presence or encrypted channel subscription the policy allows."""
    relay = relay_of(request)
    fields = await read_fields(request)
    socket_id = validate_socket_id(fields.get("socket_id"))
    channel = validate_channel(fields.get("channel_name"), relay.provider.limits)
    kind = channel_kind(channel)
    if not kind.needs_auth:
        raise BadRequest("public channels need no authorization", channel=channel)
    principal = await relay.identify(request)
    rule = relay.policy.rule_for(channel)
    await relay.limiter.check(
        "auth", principal, relay.client_ip(request), rules=() if rule is None else ((rule, 1),)
    )
    decision = require(relay.policy, principal, Action.SUBSCRIBE, channel)
    presence = None
    if kind is ChannelKind.PRESENCE:
        if not isinstance(decision, AllowPresence):
            raise Forbidden("presence channels need a signed-in user", channel=channel)
        encode_user_info(decision.user_info)  # size check before signing
        presence = PresenceData(decision.user_id, decision.user_info)
    answer = relay.provider.authorize_channel(
        socket_id=socket_id, channel=channel, presence=presence
    )
    return json_answer(answer)


@router.post(
    "/auth/user",
    summary="Authenticate a user for pusher:signin (pusher-js userAuthentication)",
    response_model=dict[str, str],
)
async def authenticate_user(request: Request) -> Response:
    """Sign the user data of a signed-in end user for this socket."""
    relay = relay_of(request)
    fields = await read_fields(request)
    socket_id = validate_socket_id(fields.get("socket_id"))
    principal = await relay.identify(request)
    if not principal.is_user or principal.id is None:
        raise Unauthenticated("user authentication needs an end user's token")
    await relay.limiter.check("auth", principal, relay.client_ip(request))
    info = {k: principal.claims[k] for k in ("name",) if k in principal.claims}
    encode_user_info(info)
    answer = relay.provider.authenticate_user(
        socket_id=socket_id, user=PresenceData(principal.id, info)
    )
    return json_answer(answer)


MAX_TOKEN_CHANNELS = 100


@router.get(
    "/auth/token",
    operation_id="issue_token_get",
    summary="A client token for token-based providers (Ably authUrl, Supabase setAuth)",
)
@router.post(
    "/auth/token",
    operation_id="issue_token_post",
    summary="A client token for token-based providers (Ably authUrl, Supabase setAuth)",
)
async def issue_token(request: Request) -> dict[str, Any]:
    """The provider's token for this caller, granting exactly what the channel policy allows.

    `channels` (comma-separated, query or body) names channels the client wants, for rules whose
    pattern cannot be granted as a whole (for example `presence-{name}`)."""
    relay = relay_of(request)
    fields = dict(request.query_params)
    if request.method == "POST":
        fields.update(await read_fields(request))
    names = [c for c in fields.get("channels", "").split(",") if c]
    if len(names) > MAX_TOKEN_CHANNELS:
        raise TooManyItems(f"at most {MAX_TOKEN_CHANNELS} channels", limit=MAX_TOKEN_CHANNELS)
    channels = [validate_channel(c, relay.provider.limits) for c in dict.fromkeys(names)]
    principal = await relay.identify(request)
    await relay.limiter.check("auth", principal, relay.client_ip(request))
    return await relay.provider.issue_token(principal, relay.policy, channels=channels)
