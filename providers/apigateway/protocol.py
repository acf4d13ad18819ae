"""Pusher Channels protocol 7 over API Gateway's $default route: one client frame per invocation.

The protocol is the shared session (providers/pusherproto/session.py), which the local server
drives too; this is its API Gateway driver. The session's state is the connection's DynamoDB row,
read through DynamoPort (port.py) when first needed, so a frame may land on any Lambda instance.

A reply that is the whole outcome (pong, a subscription's answer, an error) travels back as the
route response, which costs no management API call. An outcome that also tells others something
(a presence member_added, a client event) or closes the connection posts its replies first, in
order, then its broadcasts: the route response would leave only after them, and pusher-js ignores
member events for a channel whose roster it has not had yet. A close is API Gateway's to send:
the management API's DELETE closes the socket with a code of its own choosing (pusher-js then
reconnects), so the reason travels in the `pusher:error` posted before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.webhooks.sink import emit, settle
from providers.apigateway.port import DynamoPort
from providers.apigateway.settings import MAX_FRAME_BYTES
from providers.pusherproto.session import Session

if TYPE_CHECKING:
    from providers.apigateway.provider import ApiGatewayProvider
    from providers.pusherproto.config import SessionConfig
    from providers.pusherproto.outcome import Outcome


class Protocol:
    """Handles one frame from one connection and returns the route response, if any."""

    def __init__(self, provider: ApiGatewayProvider, config: SessionConfig) -> None:
        self.provider = provider
        self.config = config

    async def handle(
        self, connection_id: str, body: str, *, client_ip: str | None = None
    ) -> str | None:
        """The route response to one frame (None: nothing to say, or said by posts)."""
        port = DynamoPort(self.provider.store, connection_id)
        session = Session(self.config, port, client_ip=client_ip)
        if len(body.encode()) > MAX_FRAME_BYTES:
            outcome = await session.invalid(f"Frames are limited to {MAX_FRAME_BYTES} bytes")
        else:
            outcome = await session.receive(body)
        return await self._carry_out(connection_id, outcome)

    async def _carry_out(self, connection_id: str, outcome: Outcome) -> str | None:
        provider = self.provider
        if not outcome.broadcasts and outcome.close is None and len(outcome.replies) <= 1:
            await _hand_over(outcome)
            return outcome.replies[0] if outcome.replies else None
        for reply in outcome.replies:
            await provider.send(connection_id, reply)
        for broadcast in outcome.broadcasts:
            exclude = connection_id if broadcast.exclude_sender else None
            await provider.broadcast(
                broadcast.channel, broadcast.frame(), exclude_connection=exclude
            )
        await _hand_over(outcome)
        if outcome.close is not None:
            await provider.close(connection_id)
        return None


async def _hand_over(outcome: Outcome) -> None:
    # The webhook sink sends to SQS here: before the invocation returns, or never.
    if outcome.hooks:
        emit(outcome.hooks)
        await settle()
