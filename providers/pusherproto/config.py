"""What a Pusher protocol session decides by: the app's credentials, the provider's limits, the
authorizing service, the policy and its event schemas, the per-connection caps, and the clock."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from core.policy import Policy
    from core.principal import Principal
    from core.provider import Limits
    from core.schemas import EventSchemas

CLIENT_EVENTS_PER_SECOND = 10  # Pusher's per-connection limit
# Pusher sends every change of a channel's subscription count up to this many subscribers, and
# above it at most one announcement per interval (its documented throttle).
COUNT_EVERY_CHANGE_UP_TO = 100
COUNT_THROTTLE_SECONDS = 5.0


class SubscriptionGate(Protocol):
    """The authorizing service's entry point for socket sessions (core.authorizing.Authorizer):
    identity (the session's), rate limit, policy, validation, in that order."""

    async def authorize_subscription(
        self, principal: Principal, channel: object, *, client_ip: str | None = None
    ) -> object:
        """Return if `principal` may subscribe; raise the refusal (a RelayError) otherwise."""


class SessionConfig:
    """The same for every connection of one server (no repr: it holds the app secret)."""

    __slots__ = (
        "app_key",
        "app_secret",
        "client_events_per_second",
        "clock",
        "gate",
        "limits",
        "max_invalid_frames",
        "max_subscriptions",
        "policy",
        "schemas",
        "subscription_counts",
    )

    def __init__(
        self,
        *,
        app_key: str,
        app_secret: str,
        limits: Limits,
        gate: SubscriptionGate,
        policy: Policy,
        schemas: EventSchemas | None = None,
        max_subscriptions: int = 100,
        max_invalid_frames: int = 20,
        client_events_per_second: int = CLIENT_EVENTS_PER_SECOND,
        subscription_counts: bool = False,
        clock: Callable[[], float] = time.time,  # wall time: API Gateway keeps it across hosts
    ) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.limits = limits
        self.gate = gate  # public subscriptions
        self.policy = policy  # client events
        self.schemas = schemas
        self.max_subscriptions = max_subscriptions
        self.max_invalid_frames = max_invalid_frames
        self.client_events_per_second = client_events_per_second
        self.subscription_counts = subscription_counts  # pusher_internal:subscription_count
        self.clock = clock
