"""Supabase Realtime: publishes through Broadcast's REST endpoint and mints supabase-js tokens.

Channel kinds map onto Realtime topics by name: a public relay channel is a public topic (no RLS,
anyone with the anon key may join), and private- and presence- channels are private topics, which
Realtime authorizes with the RLS policies `relay supabase policies` compiles from the same policy.
Supabase has no end-to-end encrypted channels, no server-side presence query, no history and no
webhooks: those refuse with NotSupported (501).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Self

import orjson

from core.errors import (
    Forbidden,
    NotSupported,
    PayloadTooLarge,
    ProviderError,
    Unauthenticated,
)
from core.provider import Limits, Member, Message, Provider, Receipt, chunked
from core.settings import read_env
from core.validation import ChannelKind, channel_kind
from providers.outbound.lazy import Lazy
from providers.supabase import tokens
from providers.supabase.settings import SupabaseSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import httpx

    from core.policy import Policy
    from core.principal import Principal
    from core.settings import Settings
    from providers.supabase.broadcast import BroadcastApi

log = logging.getLogger(__name__)
# `relay check --live` broadcasts an empty event to this public topic, which no client is meant
# to join: Realtime's REST API has no read-only call a service role key could be tried on.
CHECK_TOPIC = "realtime-relay-check"


def topic_is_private(channel: str) -> bool:
    """Whether the channel is a private Realtime topic (private-, presence-, private-encrypted-)."""
    return channel_kind(channel) is not ChannelKind.PUBLIC


def broadcast_payload(data: str) -> dict[str, Any]:
    """Realtime's payload must be a JSON object: data that is one travels as itself, anything
    else (text, arrays, numbers) as `{"data": <the data string>}`."""
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError:
        decoded = None
    return decoded if isinstance(decoded, dict) else {"data": data}


class SupabaseProvider(Provider):
    """Supabase Realtime Broadcast, with private channels authorized by compiled RLS policies."""

    name = "supabase"

    def __init__(
        self,
        settings: SupabaseSettings,
        *,
        http: httpx.AsyncClient | None = None,
        api: BroadcastApi | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
        )
        self._api = Lazy(lambda: _broadcast_api(settings, http), ready=api)
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Read SUPABASE_* (the relay's own settings hold nothing Supabase needs)."""
        return cls(read_env(SupabaseSettings))

    # -- publishing -----------------------------------------------------------------------
    def _wire(self, message: Message) -> dict[str, Any]:
        payload = broadcast_payload(message.data)
        size = len(orjson.dumps(payload))
        if size > self.limits.max_payload_bytes:
            raise PayloadTooLarge(
                f"the broadcast payload is {size} bytes encoded; "
                f"the limit is {self.limits.max_payload_bytes}",
                limit=self.limits.max_payload_bytes,
                size=size,
            )
        wire: dict[str, Any] = {
            "topic": message.channel,
            "event": message.name,
            "payload": payload,
            "private": topic_is_private(message.channel),
        }
        if message.id is not None:
            # Realtime hands it to clients as the broadcast's meta.id (any string; its own tests
            # use "msg-123"): with an Idempotency-Key it is stable across retries, for dedup.
            wire["id"] = message.id
        return wire

    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        """Check every message, then send them in calls of SUPABASE_MAX_MESSAGES_PER_CALL at
        most, one after another, so that a burst stays inside the project's per-second quota."""
        wire = [self._wire(m) for m in messages]
        if any(m.socket_id is not None for m in messages):
            # Realtime has no sender exclusion; supabase-js decides echo with `broadcast.self`.
            log.debug("supabase ignores socket_id: Realtime cannot exclude a sender")
        accepted = 0
        for batch in chunked(wire, self.settings.max_messages_per_call):
            try:
                await self.api.send(batch)
            except ProviderError as exc:
                # What earlier calls delivered cannot be called back: say how much that was.
                exc.extra["messages_accepted"] = accepted
                raise
            accepted += len(batch)
        return [Receipt(m.channel, m.name, m.id) for m in messages]

    # -- client tokens --------------------------------------------------------------------
    async def issue_token(
        self, principal: Principal, policy: Policy, *, channels: Sequence[str] = ()
    ) -> dict[str, Any]:
        """A short-lived Supabase JWT for a signed-in user, carrying the claims the policy reads.

        `channels` is not needed: the compiled RLS policies decide every topic at join time.
        Anonymous callers need no token: supabase-js connects with the project's anon key, and
        the policy's `anyone` grants are compiled for the anon role."""
        if principal.is_backend:
            raise Forbidden("Supabase tokens are for end users; backends publish through the relay")
        if not principal.is_user or principal.id is None:
            raise Unauthenticated(
                "a Supabase token needs a signed-in user; anonymous clients use the anon key"
            )
        minted = tokens.mint(
            self.settings, principal, tokens.policy_claims(policy), now=self._clock()
        )
        return minted.answer()

    async def check(self) -> str:
        """Broadcast an empty event to CHECK_TOPIC with the service role key."""
        message = {"topic": CHECK_TOPIC, "event": "check", "payload": {}, "private": False}
        await self.api.send([message])
        return f"{self.settings.broadcast_url} accepted the service role key (topic {CHECK_TOPIC})"

    # -- queries --------------------------------------------------------------------------
    async def members(self, channel: str) -> list[Member]:
        """Refused: Realtime keeps presence on the sockets and offers no server-side query."""
        raise NotSupported(
            "supabase has no server-side presence query; "
            "read the members in the client with channel.presenceState()"
        )

    @property
    def api(self) -> BroadcastApi:
        """The broadcast client, built on the first publish (providers/outbound/lazy.py)."""
        return self._api.get()

    async def aclose(self) -> None:
        """Close the HTTP pool."""
        await self._api.aclose()


def _broadcast_api(settings: SupabaseSettings, http: httpx.AsyncClient | None) -> BroadcastApi:
    from providers.supabase.broadcast import BroadcastApi

    return BroadcastApi(settings, http=http)
