"""The local provider's endpoints: `/app/{key}` (WebSocket) and `/v1/stream` (SSE); the Pusher
HTTP API (`/apps/...`) is app/pusher_http.py, served for apigateway too."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import Response, StreamingResponse

from app.middleware import over_capacity_problem
from app.problems import problem_response
from app.relay import relay_of
from core.errors import RateLimited
from providers.local import handshake
from providers.local.admission import Refusal, Ticket
from providers.local.sse import SseStream
from providers.local.websocket import PusherConnection
from providers.pusherproto import frames

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import Receive, Scope, Send

    from providers.local.provider import LocalProvider

# An address at its cap must first close a stream; a full server waits for others to leave.
ADDRESS_FULL_RETRY_AFTER = 10
SERVER_FULL_RETRY_AFTER = 5


def build_router(provider: LocalProvider) -> APIRouter:
    """Routes bound to one local provider."""
    router = APIRouter()
    settings = provider.settings

    @router.websocket("/app/{key}")
    async def pusher_socket(websocket: WebSocket, key: str) -> None:
        """Pusher Channels protocol 7, for pusher-js pointed at this relay."""
        relay = relay_of(websocket)
        await websocket.accept()
        # Refusals come after the handshake, as Pusher's do (providers/local/handshake.py).
        refused = handshake.refusal(key, settings.app_key, websocket.query_params.get("protocol"))
        client_ip = relay.client_ip(websocket)
        ticket = refused or handshake.admit(provider, client_ip)
        if not isinstance(ticket, Ticket):
            code, message = ticket
            await websocket.send_text(frames.error(message, code))
            await websocket.close(code)
            return
        config = provider.session_config(relay.authorizer, relay.policy, relay.schemas)
        connection = PusherConnection(websocket, provider, config, client_ip=client_ip)
        provider.connections.add(connection)
        try:
            await connection.run()
        finally:
            provider.connections.discard(connection)
            ticket.release()

    @router.get(
        "/v1/stream",
        tags=["stream"],
        summary="Server-sent events for one or more channels",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        request: Request,
        channel: Annotated[list[str], Query(min_length=1)],
    ) -> Response:
        """Each event as `data: {"type": "event", ...}`; `: heartbeat` comments keep it open."""
        relay = relay_of(request)
        provider.refuse_if_draining()
        principal = await relay.identify(request, query_token=True)  # EventSource: no headers
        client_ip = relay.client_ip(request)
        grants = await relay.authorizer.authorize_stream(principal, channel, client_ip=client_ip)
        channels = [g.channel for g in grants]
        presence = {g.channel: g.presence for g in grants if g.presence is not None}
        last_id = request.headers.get("last-event-id")
        sse = SseStream(provider, channels, last_id, presence=presence, history=relay.history)
        admitted = provider.admission.admit(client_ip)
        if admitted is Refusal.ADDRESS_FULL:
            raise RateLimited(
                f"{settings.max_connections_per_ip} streams and sockets are open from this address",
                retry_after=ADDRESS_FULL_RETRY_AFTER,
            )
        if admitted is Refusal.SERVER_FULL:
            return problem_response(
                503,
                over_capacity_problem(handshake.SERVER_FULL, request.url.path),
                {"Retry-After": str(SERVER_FULL_RETRY_AFTER)},
            )
        assert isinstance(admitted, Ticket)
        return _Stream(
            sse.frames(),
            admitted,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


class _Stream(StreamingResponse):
    """A streaming response that gives its admission ticket back however it ends, even when
    the client leaves before the body's first read (when the generator's own `finally` never
    runs)."""

    def __init__(self, content: AsyncIterator[bytes], ticket: Ticket, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.ticket = ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ticket.release()
