"""The local provider's endpoints: `/app/{key}` (WebSocket), `/v1/stream` (SSE), `/apps/...`."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import StreamingResponse

from app.access import require
from app.errors import Forbidden
from app.policy import Action, AllowPresence
from app.relay import relay_of
from app.validation import ChannelKind, channel_kind, encode_user_info, validate_channel
from providers.base import PresenceData
from providers.local.pusher_http import build_pusher_http_router
from providers.local.sse import SseStream
from providers.local.websocket import PusherConnection
from providers.pusherproto import frames
from providers.pusherproto.frames import ErrorCode

if TYPE_CHECKING:
    from app.policy import Allow
    from providers.local.provider import LocalProvider

MAX_STREAM_CHANNELS = 100


def build_router(provider: LocalProvider) -> APIRouter:
    """Routes bound to one local provider."""
    router = APIRouter()
    settings = provider.settings

    @router.websocket("/app/{key}")
    async def pusher_socket(websocket: WebSocket, key: str) -> None:
        """Pusher Channels protocol 7, for pusher-js pointed at this relay."""
        relay = relay_of(websocket)
        await websocket.accept()
        refusal = _refusal(key, settings.app_key, websocket.query_params.get("protocol"))
        if refusal is not None:
            code, message = refusal
            await websocket.send_text(frames.error(message, code))
            await websocket.close(code)
            return
        connection = PusherConnection(websocket, provider, relay.policy, relay.schemas)
        provider.connections.add(connection)
        try:
            await connection.run()
        finally:
            provider.connections.discard(connection)

    @router.get(
        "/v1/stream",
        tags=["stream"],
        summary="Server-sent events for one or more channels",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        request: Request,
        channel: Annotated[list[str], Query(min_length=1, max_length=MAX_STREAM_CHANNELS)],
    ) -> StreamingResponse:
        """Each event as `data: {"type": "event", ...}`; `: heartbeat` comments keep it open."""
        relay = relay_of(request)
        channels = [validate_channel(c, provider.limits) for c in dict.fromkeys(channel)]
        principal = await relay.identify(request)
        presence: dict[str, PresenceData] = {}
        for name in channels:
            decision = require(relay.policy, principal, Action.SUBSCRIBE, name)
            member = _member(decision, name)
            if member is not None:
                presence[name] = member
        sse = SseStream(provider, channels, request.headers.get("last-event-id"), presence=presence)
        return StreamingResponse(
            sse.frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    router.include_router(build_pusher_http_router(provider))
    return router


def _member(decision: Allow | AllowPresence, channel: str) -> PresenceData | None:
    """Who a stream joins a presence channel as: what /auth/channel signs for the same caller
    (the policy's AllowPresence, size-checked), or 403 when the policy allowed no member."""
    if channel_kind(channel) is not ChannelKind.PRESENCE:
        return None
    if not isinstance(decision, AllowPresence):
        raise Forbidden("presence channels need a signed-in user", channel=channel)
    encode_user_info(decision.user_info)
    return PresenceData(decision.user_id, decision.user_info)


def _refusal(key: str, app_key: str, protocol: str | None) -> tuple[int, str] | None:
    if not hmac.compare_digest(key.encode(), app_key.encode()):
        return ErrorCode.APP_NOT_FOUND, f"App key {key[:64]} not in this cluster"
    if protocol is None:
        return ErrorCode.NO_PROTOCOL, "No protocol version supplied"
    if not protocol.isdigit():
        return ErrorCode.INVALID_VERSION, "Invalid version string"
    if not frames.MIN_PROTOCOL_VERSION <= int(protocol) <= frames.PROTOCOL_VERSION:
        return ErrorCode.UNSUPPORTED_PROTOCOL, f"Unsupported protocol version {protocol[:8]}"
    return None
