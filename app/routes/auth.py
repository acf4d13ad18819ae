"""Client authorization: pusher-js channelAuthorization and userAuthentication endpoints."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from app.access import require
from app.errors import BadRequest, Forbidden, Unauthenticated
from app.forms import read_fields
from app.policy import Action, AllowPresence
from app.relay import Relay, get_relay
from app.validation import (
    ChannelKind,
    channel_kind,
    encode_user_info,
    validate_channel,
    validate_socket_id,
)
from providers.base import PresenceData

router = APIRouter(tags=["auth"])

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
)
async def authorize_channel(
    request: Request, relay: Annotated[Relay, Depends(get_relay)]
) -> dict[str, str]:
    """Sign a private, presence or encrypted channel subscription the policy allows."""
    fields = await read_fields(request)
    socket_id = validate_socket_id(fields.get("socket_id"))
    channel = validate_channel(fields.get("channel_name"), relay.provider.limits)
    kind = channel_kind(channel)
    if not kind.needs_auth:
        raise BadRequest("public channels need no authorization", channel=channel)
    principal = await relay.identify(request)
    rule = relay.policy.rule_for(channel)
    await relay.limiter.check(
        "auth", principal, relay.client_ip(request), rules=() if rule is None else (rule,)
    )
    decision = require(relay.policy, principal, Action.SUBSCRIBE, channel)
    presence = None
    if kind is ChannelKind.PRESENCE:
        if not isinstance(decision, AllowPresence):
            raise Forbidden("presence channels need a signed-in user", channel=channel)
        encode_user_info(decision.user_info)  # size check before signing
        presence = PresenceData(decision.user_id, decision.user_info)
    return relay.provider.authorize_channel(socket_id=socket_id, channel=channel, presence=presence)


@router.post(
    "/auth/user",
    summary="Authenticate a user for pusher:signin (pusher-js userAuthentication)",
)
async def authenticate_user(
    request: Request, relay: Annotated[Relay, Depends(get_relay)]
) -> dict[str, str]:
    """Sign the user data of a signed-in end user for this socket."""
    fields = await read_fields(request)
    socket_id = validate_socket_id(fields.get("socket_id"))
    principal = await relay.identify(request)
    if not principal.is_user or principal.id is None:
        raise Unauthenticated("user authentication needs an end user's token")
    await relay.limiter.check("auth", principal, relay.client_ip(request))
    info = {k: principal.claims[k] for k in ("name",) if k in principal.claims}
    encode_user_info(info)
    return relay.provider.authenticate_user(
        socket_id=socket_id, user=PresenceData(principal.id, info)
    )


@router.api_route(
    "/auth/token",
    methods=["GET", "POST"],
    summary="A client token for token-based providers (Ably authUrl, Supabase setAuth)",
)
async def issue_token(
    request: Request, relay: Annotated[Relay, Depends(get_relay)]
) -> dict[str, Any]:
    """The provider's token for this caller, granting exactly what the channel policy allows."""
    principal = await relay.identify(request)
    await relay.limiter.check("auth", principal, relay.client_ip(request))
    return await relay.provider.issue_token(principal, relay.policy)
