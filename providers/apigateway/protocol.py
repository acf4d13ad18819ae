"""Pusher Channels protocol 7 over API Gateway's $default route: one client frame per invocation.

The same rules as the local provider's socket (providers/local/websocket.py): signatures checked
with providers.pusherproto.signing against the socket id $connect issued, public subscriptions and
client events decided by the policy, names and sizes by core.validation. State lives in DynamoDB,
so a frame may land on any Lambda instance. The reply to the sender (pong, subscription results,
errors) is returned and travels back as the route response; frames for others are posted.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from core import principal as principals
from core.errors import RelayError
from core.policy import Action, Deny
from core.validation import (
    ChannelKind,
    channel_kind,
    check_payload_size,
    encode_data,
    validate_channel,
    validate_event_name,
)
from providers.apigateway import membership
from providers.apigateway.settings import MAX_FRAME_BYTES
from providers.apigateway.store import Conflict
from providers.pusherproto import answers, frames, signing
from providers.pusherproto.frames import ErrorCode

if TYPE_CHECKING:
    from collections.abc import Callable

    from core.policy import Policy
    from core.principal import Principal
    from core.provider import PresenceData
    from providers.apigateway.provider import ApiGatewayProvider
    from providers.apigateway.records import Connection

log = logging.getLogger(__name__)


class Protocol:
    """Handles one frame from one connection and returns the reply frame, if any."""

    def __init__(
        self,
        provider: ApiGatewayProvider,
        policy: Policy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.policy = policy
        self.clock = clock

    async def handle(self, connection_id: str, body: str) -> str | None:
        """The reply to one frame (None: nothing to say)."""
        if len(body.encode()) > MAX_FRAME_BYTES:
            return frames.error(f"Frames are limited to {MAX_FRAME_BYTES} bytes")
        try:
            frame = frames.parse(body)
        except ValueError:
            return frames.error("Invalid JSON: a frame must be an object with an event")
        name: str = frame["event"]
        data = frame.get("data")
        if name == "pusher:ping":
            return frames.pong()  # no state needed: answered without a table read
        if name == "pusher:pong":
            return None
        connection = await self.provider.store.connection(connection_id)
        if connection is None:
            # Its row expired or a cleanup removed it: only a new connection can recover.
            await self.provider.close(connection_id)
            return frames.error("Unknown connection: reconnect", ErrorCode.GENERIC_RECONNECT)
        if name == "pusher:subscribe":
            return await self._subscribe(connection, data if isinstance(data, dict) else {})
        if name == "pusher:unsubscribe":
            channel = data.get("channel") if isinstance(data, dict) else None
            if isinstance(channel, str):
                await membership.leave(self.provider, connection_id, channel)
            return None
        if name == "pusher:signin":
            return await self._signin(connection, data if isinstance(data, dict) else {})
        if name.startswith("client-"):
            return await self._client_event(connection, name, frame.get("channel"), data)
        return None  # other events are ignored, as Pusher ignores them

    def _principal(self, connection: Connection) -> Principal:
        if connection.user_id is None:
            return principals.ANONYMOUS
        return principals.user(connection.user_id)

    def _expired(self, connection: Connection) -> bool:
        # The token proved who connected; once it expires, the connection's own identity no
        # longer counts (signed subscriptions still do: /auth/channel checks a fresh credential).
        return connection.token_expires is not None and connection.token_expires <= self.clock()

    async def _subscribe(self, connection: Connection, data: dict[str, Any]) -> str | None:
        raw = data.get("channel")
        label = raw if isinstance(raw, str) else ""
        if label.startswith(frames.SERVER_TO_USER_PREFIX):
            return await self._subscribe_server_to_user(connection, label)
        try:
            channel = validate_channel(raw, self.provider.limits)
        except RelayError as exc:
            return frames.subscription_error(
                label, kind="InvalidChannel", message=exc.detail, status=400
            )
        kind = channel_kind(channel)
        presence: PresenceData | None = None
        if kind is ChannelKind.PUBLIC:
            if self._expired(connection):
                return _refusal(channel, "token expired: reconnect with a fresh token", 401)
            decision = self.policy.decide(self._principal(connection), Action.SUBSCRIBE, channel)
            if isinstance(decision, Deny):
                return _refusal(channel, decision.reason, 401 if decision.unauthenticated else 403)
        else:
            channel_data = data.get("channel_data") if kind is ChannelKind.PRESENCE else None
            if kind is ChannelKind.PRESENCE and not isinstance(channel_data, str):
                return _refusal(channel, "presence subscriptions need channel_data", 401)
            if not signing.verify_channel_auth(
                self.provider.settings.app_key,
                self.provider.app_secret,
                data.get("auth"),
                socket_id=connection.socket_id,
                channel=channel,
                channel_data=channel_data,
            ):
                return _refusal(channel, "Invalid signature", 401)
            if channel_data is not None:
                presence = answers.parse_channel_data(channel_data)
                if presence is None:
                    return _refusal(channel, "channel_data must hold a string user_id", 400)
        try:
            return await membership.join(self.provider, connection, channel, presence)
        except Conflict:
            return None  # the connection closed while subscribing: nobody to answer

    async def _subscribe_server_to_user(self, connection: Connection, channel: str) -> str | None:
        # pusher-js subscribes to its own #server-to-user- channel after pusher:signin.
        signed_in = connection.signed_in
        if signed_in is None or channel != frames.SERVER_TO_USER_PREFIX + signed_in:
            return _refusal(channel, "only a signed-in user's own #server-to-user- channel", 403)
        try:
            return await membership.join(self.provider, connection, channel, None)
        except Conflict:
            return None

    async def _signin(self, connection: Connection, data: dict[str, Any]) -> str:
        user_data = data.get("user_data")
        if not isinstance(user_data, str) or not signing.verify_user_auth(
            self.provider.settings.app_key,
            self.provider.app_secret,
            data.get("auth"),
            socket_id=connection.socket_id,
            user_data=user_data,
        ):
            return frames.error("Invalid signin signature", ErrorCode.UNAUTHORIZED)
        try:
            user_id = orjson.loads(user_data)["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            user_id = None
        if not isinstance(user_id, str) or not user_id:
            return frames.error("user_data must hold a string id", ErrorCode.UNAUTHORIZED)
        try:
            await self.provider.store.sign_in(connection.connection_id, user_id)
        except Conflict:
            return frames.error("Unknown connection: reconnect", ErrorCode.GENERIC_RECONNECT)
        return frames.signin_success(user_data)

    async def _client_event(
        self, connection: Connection, name: str, channel: object, data: object
    ) -> str | None:
        provider = self.provider
        if not isinstance(channel, str) or channel_kind(channel) not in (
            ChannelKind.PRIVATE,
            ChannelKind.PRESENCE,
        ):
            return frames.error("Client events are only for private and presence channels")
        subscription = await provider.store.subscription(channel, connection.connection_id)
        if subscription is None:
            return frames.error("Client event rejected: not subscribed to that channel")
        try:
            validate_event_name(name, provider.limits, client=True)
            encoded = encode_data(data)
            check_payload_size(encoded, provider.limits)
        except RelayError as exc:
            return frames.error(f"Client event rejected: {exc.detail}")
        user_id = subscription.user_id  # presence: who sent it, as pusher-js reports it
        principal = principals.user(user_id) if user_id else self._principal(connection)
        decision = self.policy.decide(principal, Action.CLIENT_EVENT, channel)
        if isinstance(decision, Deny):
            return frames.error(f"Client event rejected: {decision.reason}")
        allowed = await provider.store.count_client_event(
            connection.connection_id,
            second=int(self.clock()),
            limit=provider.gateway.client_events_per_second,
        )
        if not allowed:
            return frames.error(
                "Client event rejected: rate limit", ErrorCode.CLIENT_EVENT_RATE_LIMIT
            )
        event = frames.event(name, channel, encoded, user_id=user_id)
        await provider.broadcast(channel, event, exclude_connection=connection.connection_id)
        return None


def _refusal(channel: str, message: str, status: int) -> str:
    return frames.subscription_error(channel, kind="AuthError", message=message, status=status)
