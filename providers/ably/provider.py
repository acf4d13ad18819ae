"""Ably: TokenRequests compiled from the channel policy, and publishes through Ably's REST API.

ably-js clients authenticate with the relay's `/auth/token` as their `authUrl`; the TokenRequest
they get carries a capability listing exactly the channels and operations the policy grants
(providers.ably.capability), and `clientId` fixed to the signed-in user's id. Anonymous callers
get no clientId: Ably then lets them neither enter presence nor claim an identity.

Publishing sends each relay message as its own Ably message, with the relay's message id as
Ably's idempotency key: one message over `POST /channels/{id}/messages`, several through the
batch request (one spec per message, so each id stands alone and Ably's `<base>:<index>` rule
for atomic multi-message publishes never applies). Retries resend the same bytes. Ably drops a
repeated id for two minutes only: `Limits.idempotent_ids_seconds` says how long after a first
attempt the relay may still resend it (core/idempotency.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Self

import orjson

from core.errors import Forbidden, InvalidUserId, PayloadTooLarge, TooManyItems, Unauthenticated
from core.principal import PrincipalKind
from core.provider import Limits, Member, Message, Provider, Receipt
from core.settings import read_env
from providers.ably import webhooks
from providers.ably.capability import compile_capability
from providers.ably.settings import AblySettings
from providers.ably.token import new_nonce, sign_token_request
from providers.outbound.lazy import Lazy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import httpx

    from core.policy import Policy
    from core.principal import Principal
    from core.provider import ChannelEvent
    from core.settings import Settings
    from providers.ably.rest import AblyRest

log = logging.getLogger(__name__)

BATCH_SPECS_PER_CALL = 100  # our bound, so one slow request holds back little
BATCH_MAX_BODY_BYTES = 2 * 1024 * 1024 - 1  # "must be less than 2MiB"
MAX_TOKEN_CHANNELS = 100  # channels a caller may name for one token
PRESENCE_LIMIT = 1000  # the REST API's largest page
IDEMPOTENCY_WINDOW_SECONDS = 120.0  # Ably drops a repeated message id within two minutes
CHECK_CHANNEL = "realtime-relay-check"  # `relay check --live` reads its history: nothing written


class AblyProvider(Provider):
    """Ably, over its REST API; clients connect with ably-js and a relay-signed TokenRequest."""

    name = "ably"

    def __init__(
        self,
        settings: AblySettings,
        *,
        http: httpx.AsyncClient | None = None,
        rest: AblyRest | None = None,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = new_nonce,
    ) -> None:
        self.settings = settings
        self.limits = Limits(
            max_payload_bytes=settings.max_message_bytes,
            idempotent_ids_seconds=resend_window(settings),
            keeps_history=True,  # the relay delegates history to Ably's own
        )
        self._rest = Lazy(lambda: _ably_rest(settings, http), ready=rest)
        self._clock = clock
        self._nonce = nonce

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Read ABLY_* (the relay's own settings hold nothing Ably needs)."""
        return cls(read_env(AblySettings))

    # -- client tokens --------------------------------------------------------------------
    async def issue_token(
        self, principal: Principal, policy: Policy, *, channels: Sequence[str] = ()
    ) -> dict[str, Any]:
        """A signed TokenRequest for what the policy grants `principal` (and named `channels`)."""
        if len(channels) > MAX_TOKEN_CHANNELS:
            raise TooManyItems(
                f"{len(channels)} channels named; the limit is {MAX_TOKEN_CHANNELS}",
                limit=MAX_TOKEN_CHANNELS,
            )
        client_id = principal.id if principal.is_user else None
        if client_id == "*":  # Ably reads "*" as "may act as any client"
            raise InvalidUserId("the user id '*' cannot be an Ably clientId")
        capability = compile_capability(policy, principal, self.limits, channels=channels)
        if capability.empty:
            if principal.kind is PrincipalKind.ANONYMOUS:
                raise Unauthenticated("the channel policy grants anonymous callers no channel")
            raise Forbidden(f"the channel policy grants {principal.describe()} no channel")
        if capability.left_out:
            log.debug(
                "ably token for %s leaves out %d open pattern(s) Ably cannot express exactly",
                principal.describe(),
                len(capability.left_out),
            )
        request = sign_token_request(
            self.settings.key_name,
            self.settings.key_secret,
            ttl_ms=self.settings.token_ttl_seconds * 1000,
            capability=capability.text(),
            client_id=client_id,
            timestamp_ms=int(self._clock() * 1000),
            nonce=self._nonce(),
        )
        return request.as_dict()

    # -- publishing -----------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        """Deliver every message, or raise; retried calls carry the same message ids."""
        if not messages:
            return []
        base = uuid.uuid4().hex  # only for messages the relay sent without an id
        ids = [m.id or f"{base}:{index}" for index, m in enumerate(messages)]
        for m in messages:
            self._check_size(m)
        wire = [
            {"name": m.name, "data": m.data, "id": i} for m, i in zip(messages, ids, strict=True)
        ]
        if len(messages) == 1:
            await self.rest.publish(messages[0].channel, wire[0])
        else:
            specs = [
                {"channels": m.channel, "messages": w} for m, w in zip(messages, wire, strict=True)
            ]
            await _all([self.rest.publish_batch(chunk) for chunk in _batches(specs)])
        return [Receipt(m.channel, m.name, i) for m, i in zip(messages, ids, strict=True)]

    def _check_size(self, message: Message) -> None:
        # Ably counts name, data, clientId and extras (error 40009); the relay sends no
        # clientId or extras, so name and data are the whole of it.
        size = len(message.name.encode()) + len(message.data.encode())
        limit = self.settings.max_message_bytes
        if size > limit:
            raise PayloadTooLarge(
                f"the message is {size} bytes (name and data) encoded; Ably's limit is {limit}",
                limit=limit,
                size=size,
            )

    # -- queries --------------------------------------------------------------------------
    async def history(self, channel: str, *, limit: int) -> list[Message]:
        """Ably's history, newest `limit`, returned oldest first."""
        found = await self.rest.history(channel, limit=limit)
        out = [
            Message(channel, str(item.get("name") or ""), _text(item), id=_opt(item.get("id")))
            for item in found
            if isinstance(item, dict)
        ]
        out.reverse()
        return out

    async def members(self, channel: str) -> list[Member]:
        """Ably's presence set, one member per clientId (a user may hold several connections)."""
        found = await self.rest.presence(channel, limit=PRESENCE_LIMIT)
        members: dict[str, Member] = {}
        for item in found:
            if isinstance(item, dict) and isinstance(item.get("clientId"), str):
                members.setdefault(item["clientId"], Member(item["clientId"], _info(item)))
        return list(members.values())

    async def check(self) -> str:
        """Read a channel's history with the key (Basic auth): Ably answers only a valid key."""
        await self.rest.history(CHECK_CHANNEL, limit=1)
        return (
            f"{self.settings.base_url} accepted the key {self.settings.key_name} "
            f"(GET /channels/{CHECK_CHANNEL}/messages)"
        )

    # -- webhooks -------------------------------------------------------------------------
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ChannelEvent]:
        """Verify (unless unsigned ones are allowed and this one is), then normalize."""
        key_name, secret = self.settings.signing_key
        webhooks.verify(
            key_name,
            secret,
            headers,
            body,
            allow_unsigned=self.settings.allow_unsigned_webhooks,
        )
        events = webhooks.normalize(body)
        webhooks.check_fresh(events, now=self._clock())
        return events

    @property
    def rest(self) -> AblyRest:
        """The REST client, built on the first call to Ably (providers/outbound/lazy.py)."""
        return self._rest.get()

    async def aclose(self) -> None:
        """Close the pool."""
        await self._rest.aclose()


def resend_window(settings: AblySettings) -> float:
    """How long after a first attempt a resend under its ids still lands in Ably's window.

    The first attempt's messages reached Ably after it started; a resend reaches Ably within one
    whole call, whose deadline the retry loop enforces (providers/outbound/policy.py)."""
    return max(0.0, IDEMPOTENCY_WINDOW_SECONDS - settings.retry.deadline_seconds)


def _batches(specs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Specs split so each request stays under Ably's body size and our spec count."""
    batches: list[list[dict[str, Any]]] = [[]]
    size = 2  # the array's brackets
    for spec in specs:
        spec_size = len(orjson.dumps(spec)) + 1  # and its comma
        current = batches[-1]
        if current and (
            len(current) >= BATCH_SPECS_PER_CALL or size + spec_size > BATCH_MAX_BODY_BYTES
        ):
            batches.append([])
            current, size = batches[-1], 2
        current.append(spec)
        size += spec_size
    return batches


async def _all(calls: list[Any]) -> None:
    """Run the calls concurrently; every one finishes before the first failure is raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _decoded(item: Mapping[str, Any]) -> object:
    """The data with Ably's transport encodings (`utf-8/base64`) undone; `json` stays text."""
    value: object = item.get("data")
    encoding = item.get("encoding")
    steps = encoding.split("/") if isinstance(encoding, str) and encoding else []
    for step in reversed(steps):
        if step == "base64" and isinstance(value, str):
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                break
        elif step == "utf-8" and isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        elif step != "json":
            break  # an encoding we cannot undo (cipher): leave the value as it came
    return value


def _text(item: Mapping[str, Any]) -> str:
    value = _decoded(item)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return orjson.dumps(value).decode() if value is not None else ""


def _info(item: Mapping[str, Any]) -> dict[str, Any]:
    # ably-js sends object data as JSON text with encoding "json"; members show it as an object.
    value = _decoded(item)
    if isinstance(value, str) and "json" in str(item.get("encoding") or ""):
        with contextlib.suppress(orjson.JSONDecodeError):
            value = orjson.loads(value)
    if isinstance(value, dict):
        return value
    return {} if value is None else {"data": value if isinstance(value, str) else _text(item)}


def _ably_rest(settings: AblySettings, http: httpx.AsyncClient | None) -> AblyRest:
    from providers.ably.rest import AblyRest

    return AblyRest(settings, http=http)
