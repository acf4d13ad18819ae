"""What a Pusher protocol session decides by: the app's credentials, the provider's limits, the
policy and its event schemas, the per-connection caps, and the clock."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from core.policy import Policy
    from core.provider import Limits
    from core.schemas import EventSchemas

CLIENT_EVENTS_PER_SECOND = 10  # Pusher's per-connection limit


class SessionConfig:
    """The same for every connection of one server (no repr: it holds the app secret)."""

    __slots__ = (
        "app_key",
        "app_secret",
        "client_events_per_second",
        "clock",
        "limits",
        "max_invalid_frames",
        "max_subscriptions",
        "policy",
        "schemas",
    )

    def __init__(
        self,
        *,
        app_key: str,
        app_secret: str,
        limits: Limits,
        policy: Policy,
        schemas: EventSchemas | None = None,
        max_subscriptions: int = 100,
        max_invalid_frames: int = 20,
        client_events_per_second: int = CLIENT_EVENTS_PER_SECOND,
        clock: Callable[[], float] = time.time,  # wall time: API Gateway keeps it across hosts
    ) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.limits = limits
        self.policy = policy
        self.schemas = schemas
        self.max_subscriptions = max_subscriptions
        self.max_invalid_frames = max_invalid_frames
        self.client_events_per_second = client_events_per_second
        self.clock = clock
