"""Client authorization: pusher-js channelAuthorization and userAuthentication endpoints."""

from typing import Any

from fastapi import APIRouter, Request, Response

from app.direct import Direct, json_answer
from app.forms import chosen_provider, read_fields
from app.relay import relay_of

router = APIRouter(tags=["auth"])
direct = Direct(router)  # the busiest routes, served below FastAPI's routing


_PROVIDER = {
    "parameters": [
        {
            "name": "provider",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "example": "local"},
            "description": (
                "With RELAY_SECONDARY_PROVIDER: the provider the client is connected to, whose "
                "answer it needs (default: the first of the two that signs this kind). Also "
                "taken as a `provider` field of the body; given twice, refused"
            ),
        }
    ]
}

_FORM_BODY = {
    **_PROVIDER,
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
    },
}


@direct.post(
    "/auth/channel",
    summary="Authorize a channel subscription (pusher-js channelAuthorization)",
    openapi_extra=_FORM_BODY,
    response_model=dict[str, str],
)
async def authorize_channel(request: Request) -> Response:
    """Sign a private, presence or encrypted channel subscription the policy allows."""
    relay = relay_of(request)
    principal = await relay.identify(request)
    fields = await read_fields(request)
    answer = await relay.authorizer.authorize_channel(
        principal,
        socket_id=fields.get("socket_id"),
        channel=fields.get("channel_name"),
        client_ip=relay.client_ip(request),
        provider=chosen_provider(request, fields),
    )
    return json_answer(answer)


@direct.post(
    "/auth/user",
    openapi_extra=_PROVIDER,
    summary="Authenticate a user for pusher:signin (pusher-js userAuthentication)",
    response_model=dict[str, str],
)
async def authenticate_user(request: Request) -> Response:
    """Sign the user data of a signed-in end user for this socket."""
    relay = relay_of(request)
    principal = await relay.identify(request)
    fields = await read_fields(request)
    answer = await relay.authorizer.authenticate_user(
        principal,
        socket_id=fields.get("socket_id"),
        client_ip=relay.client_ip(request),
        provider=chosen_provider(request, fields),
    )
    return json_answer(answer)


@router.get(
    "/auth/token",
    openapi_extra=_PROVIDER,
    operation_id="issue_token_get",
    summary="A client token for token-based providers (Ably authUrl, Supabase setAuth)",
)
@router.post(
    "/auth/token",
    openapi_extra=_PROVIDER,
    operation_id="issue_token_post",
    summary="A client token for token-based providers (Ably authUrl, Supabase setAuth)",
)
async def issue_token(request: Request) -> dict[str, Any]:
    """The provider's token for this caller, granting exactly what the channel policy allows.

    `channels` (comma-separated, query or body) names channels the client wants, for rules whose
    pattern cannot be granted as a whole (for example `presence-{name}`)."""
    relay = relay_of(request)
    principal = await relay.identify(request)
    body = await read_fields(request) if request.method == "POST" else {}
    fields = {**request.query_params, **body}
    names = [c for c in fields.get("channels", "").split(",") if c]
    return await relay.authorizer.issue_token(
        principal,
        names,
        client_ip=relay.client_ip(request),
        provider=chosen_provider(request, body),
    )
