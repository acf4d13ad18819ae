"""How a delivery reaches every process serving its channel, and where channel state lives.

    memory   one process (RELAY_BACKPLANE=memory, the default): the hub is the whole truth
    redis    many processes and hosts (RELAY_BACKPLANE=redis): backplane_redis.py

The local provider and its sockets talk to this interface only; the redis module (and the redis
package) is imported only when it is chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from providers.local.hubport import HubPort

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from core.provider import Member
    from core.settings import Settings
    from providers.local.hub import Delivery, Hub, Subscriber
    from providers.pusherproto.cache import CacheEntry
    from providers.pusherproto.port import SessionPort
    from providers.pusherproto.state import SessionState


class Backplane(Protocol):
    """Deliveries and shared channel state, for one process's hub."""

    def port(self, socket: Subscriber, state: SessionState) -> SessionPort:
        """The Pusher session's port for one socket or stream."""

    def send(self, delivery: Delivery) -> None:
        """Deliver a session's broadcast everywhere, in order, without waiting."""

    async def publish(self, deliveries: Sequence[Delivery]) -> None:
        """Deliver the backend's events everywhere, in order; ProviderUnavailable when they
        cannot reach every process."""

    async def terminate(self, user_id: str) -> None:
        """Close the user's signed-in sockets on every process."""

    async def members(self, channel: str) -> list[Member]:
        """A presence channel's roster."""

    async def counts(self, channel: str) -> tuple[int, int]:
        """The channel's subscriptions and presence users."""

    async def channel_names(self, prefix: str = "") -> list[str]:
        """The channels with a subscriber whose names start with `prefix`."""

    async def cached(self, channel: str) -> CacheEntry | None:
        """A cache channel's last published event, if kept."""

    async def start(self) -> None:
        """Connect (once the event loop runs)."""

    async def aclose(self) -> None:
        """Leave the cluster."""


class MemoryBackplane:
    """One process: deliveries go straight to the hub, and the hub answers."""

    def __init__(self, hub: Hub, *, close_user: Callable[[str], None]) -> None:
        self.hub = hub
        self._close_user = close_user

    def port(self, socket: Subscriber, state: SessionState) -> SessionPort:
        """The hub's own port."""
        return HubPort(self.hub, socket, state)

    def send(self, delivery: Delivery) -> None:
        """Hand the delivery to this process's subscribers."""
        self.hub.deliver(delivery)

    async def publish(self, deliveries: Sequence[Delivery]) -> None:
        """Hand each delivery to this process's subscribers."""
        for delivery in deliveries:
            self.hub.deliver(delivery)

    async def terminate(self, user_id: str) -> None:
        """Close the user's sockets here."""
        self._close_user(user_id)

    async def members(self, channel: str) -> list[Member]:
        """The hub's roster."""
        return self.hub.members(channel)

    async def counts(self, channel: str) -> tuple[int, int]:
        """The hub's figures."""
        return self.hub.subscriber_count(channel), len(self.hub.members(channel))

    async def channel_names(self, prefix: str = "") -> list[str]:
        """The hub's channels."""
        return self.hub.channel_names(prefix)

    async def cached(self, channel: str) -> CacheEntry | None:
        """The hub's kept event."""
        return self.hub.cached(channel)

    async def start(self) -> None:
        """Nothing to connect."""

    async def aclose(self) -> None:
        """Nothing to leave."""


def build_backplane(
    settings: Settings, hub: Hub, *, close_user: Callable[[str], None]
) -> Backplane:
    """The backplane RELAY_BACKPLANE names (`close_user` closes a user's sockets here)."""
    if settings.backplane == "redis":
        from providers.local.backplane_redis import RedisBackplane

        return RedisBackplane.from_settings(settings, hub, close_user=close_user)
    return MemoryBackplane(hub, close_user=close_user)
