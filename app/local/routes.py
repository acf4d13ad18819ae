"""The local provider's endpoints: `/app/{key}` (WebSocket) and `/v1/stream` (SSE); the Pusher
HTTP API (`/apps/...`) is app/pusher_http.py, served for apigateway too.

Under `relay serve` neither holds a task per idle client: the sockets are the lean socket
server's (app/socket_server.py), and a stream, its gates passed here, borrows its connection
(providers/local/sse_transport.py). Under other ASGI servers both run through ASGI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import Response, StreamingResponse

from app.middleware import over_capacity_problem
from app.problems import problem_response
from app.relay import relay_of
from core.errors import RateLimited
from providers.local import handshake, sse_transport
from providers.local.admission import Refusal, Ticket
from providers.local.sse import SseStream
from providers.local.websocket import PusherConnection
from providers.pusherproto import frames

if TYPE_CHECKING:
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
        sse.ticket = admitted
        return _Stream(
            sse,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


class _Stream(StreamingResponse):
    """The stream's response: on a connection the server lends (`relay serve`), the headers
    through ASGI and then the stream on the connection itself; elsewhere a streaming response
    of its frames. Either way the stream gives its admission ticket back however it ends, even
    when the client leaves before the body's first read."""

    def __init__(self, sse: SseStream, **kwargs: Any) -> None:
        super().__init__(sse, **kwargs)
        self.sse = sse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lend = scope.get("extensions", {}).get(sse_transport.LEND, {}).get("lend")
        if lend is None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                self.sse.close()
            return
        try:
            start = {"type": "http.response.start", "status": self.status_code}
            await send({**start, "headers": self.raw_headers})
        except BaseException:
            self.sse.close()
            raise
        await sse_transport.serve(self.sse, lend)
