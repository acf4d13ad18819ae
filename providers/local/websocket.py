"""One pusher-js socket on the local server: the transport around the shared Pusher session.

This module reads frames and keeps the socket alive (the activity timeout, pinging, closing an
unanswered ping with 4201); the protocol itself (subscriptions, sign-in, client events, invalid
frames) is providers/pusherproto/session.py, which the API Gateway handlers drive too. Outgoing
frames go through the socket's Outbox; the session's state lives here for the socket's life.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from starlette.websockets import WebSocketDisconnect

from core.webhooks.sink import emit
from providers.local import handshake
from providers.local.hub import Delivery
from providers.local.outbox import Outbox
from providers.pusherproto import frames
from providers.pusherproto.frames import ErrorCode
from providers.pusherproto.session import Session
from providers.pusherproto.state import SessionState, new_socket_id

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from providers.local.provider import LocalProvider
    from providers.pusherproto.config import SessionConfig
    from providers.pusherproto.outcome import Outcome


class PusherConnection:
    """A WebSocket subscriber of the hub, served by one task (and its Outbox's writer)."""

    def __init__(
        self,
        websocket: WebSocket,
        provider: LocalProvider,
        config: SessionConfig,
        *,
        client_ip: str | None = None,
    ) -> None:
        self.websocket = websocket
        self.provider = provider
        self.state = SessionState(new_socket_id())
        self.socket_id = self.state.socket_id
        self.channels = self.state.channels  # the hub's view of the same set
        self.outbox = Outbox(
            websocket, size=provider.settings.send_buffer_frames, label=self.socket_id
        )
        port = provider.session_port(self, self.state)
        self.session = Session(config, port, self.state, client_ip=client_ip)

    @property
    def signed_in(self) -> str | None:
        """The user pusher:signin proved: the target of send_to_user and terminate_user."""
        return self.state.signed_in

    def deliver(self, delivery: Delivery) -> None:
        """Queue an event frame; a consumer too slow to keep up is disconnected."""
        self.outbox.send(delivery.pusher_frame())

    def close(self, code: int) -> None:
        """Close with a Pusher code once what is queued has been sent."""
        self.outbox.close(code)

    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        timeout = self.provider.settings.activity_timeout_seconds
        self.outbox.send(frames.connection_established(self.socket_id, timeout))
        writer = asyncio.create_task(self.outbox.drain())
        try:
            await self._read_loop(timeout)
        finally:
            self._carry_out(await self.session.close())
            self.outbox.close(1000)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 5)
            writer.cancel()

    async def _read_loop(self, activity_timeout: int) -> None:
        waiting_for_pong = False
        while not self.outbox.closing:
            wait = handshake.PONG_TIMEOUT_SECONDS if waiting_for_pong else activity_timeout
            try:
                message = await asyncio.wait_for(self.websocket.receive(), wait)
            except TimeoutError:
                if waiting_for_pong:
                    self.outbox.close(ErrorCode.PONG_NOT_RECEIVED)
                    return
                waiting_for_pong = True
                self.outbox.send(frames.ping())
                continue
            except (WebSocketDisconnect, RuntimeError):
                return  # the client went away
            if message["type"] == "websocket.disconnect":
                return
            waiting_for_pong = False
            text = message.get("text")
            if text is None:  # a binary frame: accepted when it is UTF-8 JSON, as Pusher does
                try:
                    text = (message.get("bytes") or b"").decode("utf-8")
                except UnicodeDecodeError:
                    self._carry_out(await self.session.invalid("Invalid frame: not UTF-8"))
                    continue
            self._carry_out(await self.session.receive(text))

    def _carry_out(self, outcome: Outcome) -> None:
        for reply in outcome.replies:
            self.outbox.send(reply)
        for broadcast in outcome.broadcasts:
            self.provider.broadcast(Delivery.of(broadcast, sender=self.socket_id))
        emit(outcome.hooks)
        if outcome.close is not None:
            self.outbox.close(outcome.close)
