"""The embedded local provider: holds the sockets itself, so the relay runs with no account."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Self

from core.errors import ProviderUnavailable
from core.provider import (
    CachedEvent,
    Limits,
    Member,
    Message,
    Occupancy,
    Provider,
    Receipt,
)
from providers.local.admission import Admission
from providers.local.backplane import build_backplane
from providers.local.hub import Delivery, Hub, Socket, Stream
from providers.pusherproto import frames
from providers.pusherproto.cache import kept
from providers.pusherproto.frames import ErrorCode
from providers.pusherproto.server import RelaySigned, relay_limits

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.settings import Settings
    from providers.local.hub import Subscriber
    from providers.pusherproto.port import SessionPort
    from providers.pusherproto.state import SessionState

log = logging.getLogger(__name__)

DRAINING_RETRY_AFTER = 1  # seconds: the next process is expected to be listening by then


class LocalProvider(RelaySigned, Provider):
    """Pusher protocol 7 over WebSocket, SSE, and the Pusher HTTP API, served in-process."""

    name = "local"
    limits = Limits(
        max_payload_bytes=10_240,
        max_channel_name=164,
        max_event_name=200,
    )

    def __init__(self, settings: Settings, *, hub: Hub | None = None) -> None:
        self.settings = settings
        self.limits = relay_limits(self.limits, settings)
        self.hub = hub or Hub(replay_messages=settings.sse_replay_messages)
        self.connections: set[Socket] = set()
        self.streams: set[Stream] = set()
        self.admission = Admission(
            total=settings.max_connections, per_address=settings.max_connections_per_ip
        )
        self.draining = False  # set by drain(): the process is stopping
        self.backplane = build_backplane(settings, self.hub, close_user=self._close_user)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The local provider needs nothing beyond the relay's own settings."""
        return cls(settings)

    async def start(self) -> None:
        """Join the backplane (RELAY_BACKPLANE=redis: connect to Redis)."""
        await self.backplane.start()

    def session_port(self, socket: Subscriber, state: SessionState) -> SessionPort:
        """The Pusher session's port for one socket or stream, on this backplane."""
        return self.backplane.port(socket, state)

    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        """Deliver to every subscriber (encoded once per message), encrypted channels' data
        sealed first."""
        self.refuse_if_draining()
        messages = self.seal(messages)
        await self.backplane.publish(
            [
                Delivery(
                    m.name,
                    m.channel,
                    m.data,
                    exclude=m.socket_id,
                    json=m.json,
                    history_id=m.history_id,
                )
                for m in messages
            ]
        )
        return [Receipt(m.channel, m.name, m.id) for m in messages]

    def broadcast(self, delivery: Delivery) -> None:
        """Fan a session's delivery out to the channel's subscribers, without waiting."""
        self.backplane.send(delivery)

    async def members(self, channel: str) -> list[Member]:
        """The roster of a presence channel."""
        return await self.backplane.members(channel)

    async def occupancy(self, channel: str) -> Occupancy:
        """Subscriptions, and presence users."""
        count, users = await self.backplane.counts(channel)
        user_count = users if channel.startswith("presence-") else None
        return Occupancy(occupied=count > 0, subscription_count=count, user_count=user_count)

    async def channels(self, prefix: str = "") -> dict[str, Occupancy]:
        """The occupied channels (internal `#` channels are not listed)."""
        found = await self.backplane.channel_names(prefix)
        return {c: await self.occupancy(c) for c in found if not c.startswith("#")}

    async def last_event(self, channel: str) -> CachedEvent | None:
        """A cache channel's last published event, while kept."""
        return kept(await self.backplane.cached(channel), time.time())

    async def send_to_user(self, user_id: str, event: str, data: str) -> None:
        """Deliver on the user's #server-to-user- channel, which pusher-js joins after signin."""
        self.refuse_if_draining()
        await self.backplane.publish(
            [Delivery(event, frames.SERVER_TO_USER_PREFIX + user_id, data)]
        )

    async def terminate_user(self, user_id: str) -> None:
        """Close the user's signed-in connections with 4009, which pusher-js does not retry."""
        await self.backplane.terminate(user_id)

    def _close_user(self, user_id: str) -> None:
        for connection in list(self.connections):
            if connection.signed_in == user_id:
                connection.close(ErrorCode.UNAUTHORIZED)

    async def history(self, channel: str, *, limit: int) -> list[Message]:
        """The replay log of a channel (the last `RELAY_SSE_REPLAY_MESSAGES` messages) of this
        process, for a channel whose history the relay does not keep in its store."""
        recent = self.hub.replay(channel, 0)[-limit:]
        return [
            Message(d.channel, d.event, d.data, id=self.hub.event_id(d), json=d.json)
            for d in recent
        ]

    def refuse_if_draining(self) -> None:
        """Raise 503 once draining: a 200 now would reach nobody, every client is leaving."""
        if self.draining:
            raise ProviderUnavailable(
                "the relay is shutting down: retry, the next instance takes it",
                retry_after=DRAINING_RETRY_AFTER,
            )

    def drain(self) -> None:
        """Refuse publishes from now on; close every socket with 4200 (pusher-js reconnects at
        once) and end every SSE stream with a short `retry:`, each after what it had queued."""
        self.draining = True
        for connection in list(self.connections):
            connection.close(ErrorCode.GENERIC_RECONNECT)
        for stream in list(self.streams):
            stream.end()

    async def aclose(self) -> None:
        """Tell any client still connected to reconnect (to the next process), then leave the
        backplane."""
        self.drain()
        await self.backplane.aclose()
