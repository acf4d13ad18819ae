"""Cache channels, as Pusher defines them: the last event published to the channel is kept for 30
minutes and sent to each new subscriber right after its subscription succeeds, or
`pusher:cache_miss` when there is none.

Only events published by the backend (the relay's REST API, the Pusher HTTP API) are kept; client
events and the protocol's own events never replace them. A server stores what it sent, so on an
encrypted cache channel it keeps the sealed payload.
"""

from __future__ import annotations

import math

from msgspec import Struct

from core.provider import CachedEvent

CACHE_PREFIXES = ("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-")
CACHE_SECONDS = 30 * 60  # Pusher keeps a cache channel's last event for 30 minutes
CACHE_MISS = "pusher:cache_miss"


def is_cache_channel(channel: str) -> bool:
    """Whether the channel keeps its last event."""
    return channel.startswith(CACHE_PREFIXES)


class CacheEntry(Struct, frozen=True):
    """A cache channel's last event, and when it stops being sent (epoch seconds)."""

    event: str
    data: str
    expires: float

    def fresh(self, now: float) -> bool:
        """Whether it is still within its 30 minutes."""
        return now < self.expires


def kept(cached: CacheEntry | None, now: float) -> CachedEvent | None:
    """What the provider port answers for a cache channel (Pusher's `info=cache`): the event
    while it is fresh, with its whole seconds left."""
    if cached is None or not cached.fresh(now):
        return None
    return CachedEvent(cached.event, cached.data, ttl=math.ceil(cached.expires - now))
