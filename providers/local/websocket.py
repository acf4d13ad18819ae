"""One pusher-js connection to the local provider, speaking Pusher Channels protocol 7."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

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
from providers.local.hub import Delivery
from providers.pusherproto import answers, frames, signing
from providers.pusherproto.frames import ErrorCode

if TYPE_CHECKING:
    from core.policy import Policy
    from core.principal import Principal
    from core.provider import PresenceData
    from core.schemas import EventSchemas
    from providers.local.provider import LocalProvider

log = logging.getLogger(__name__)

PONG_TIMEOUT_SECONDS = 30
CLIENT_EVENTS_PER_SECOND = 10  # Pusher's per-connection limit for client events
# More than RELAY_MAX_INVALID_FRAMES frames that are no protocol 7 frame at all (not UTF-8, not a
# JSON object with an event) within this window close the socket. pusher-js never sends one.
INVALID_FRAME_WINDOW_SECONDS = 60.0
# In Pusher's 4000-4099 range, which pusher-js does not reconnect after (the same client would
# send the same frames again); unassigned by Pusher, so never confused with one of its errors.
TOO_MANY_INVALID_FRAMES = 4010


def new_socket_id() -> str:
    """A Pusher-style socket id: two random integers joined by a dot."""
    return f"{secrets.randbelow(10**9)}.{secrets.randbelow(10**9)}"


class PusherConnection:
    """A WebSocket subscriber: a bounded send queue drained by its own writer task."""

    def __init__(
        self,
        websocket: WebSocket,
        provider: LocalProvider,
        policy: Policy,
        schemas: EventSchemas | None = None,
    ) -> None:
        self.websocket = websocket
        self.provider = provider
        self.policy = policy
        self.schemas = schemas
        self.socket_id = new_socket_id()
        self.channels: set[str] = set()
        self.user_id: str | None = None  # set by pusher:signin or a presence subscription
        self.signed_in: str | None = None  # set by pusher:signin only: the target of send_to_user
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(
            maxsize=provider.settings.send_buffer_frames
        )
        self._close_code: int | None = None
        self._event_times: list[float] = []
        self._invalid_times: list[float] = []

    # -- outbound -------------------------------------------------------------------------
    def deliver(self, delivery: Delivery) -> None:
        """Queue an event frame; a consumer too slow to keep up is disconnected."""
        self.send(delivery.pusher_frame())

    def send(self, frame: str) -> None:
        """Queue a frame without blocking."""
        if self._close_code is not None:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("socket %s: send buffer full, disconnecting", self.socket_id)
            self.close(ErrorCode.OVER_CAPACITY)

    def close(self, code: int) -> None:
        """Ask the writer to close the socket with a Pusher code once the queue is flushed."""
        if self._close_code is None:
            self._close_code = code
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)
            if self._queue.full():  # the close marker did not fit: drop what is pending
                while not self._queue.empty():
                    self._queue.get_nowait()
                self._queue.put_nowait(None)

    async def _writer(self) -> None:
        while True:
            frame = await self._queue.get()
            if frame is None:
                break
            await self.websocket.send_text(frame)
        if self.websocket.application_state is WebSocketState.CONNECTED:
            await self.websocket.close(self._close_code or 1000)

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        hub = self.provider.hub
        timeout = self.provider.settings.activity_timeout_seconds
        self.send(frames.connection_established(self.socket_id, timeout))
        writer = asyncio.create_task(self._writer())
        try:
            await self._read_loop(timeout)
        finally:
            hub.remove(self)
            self.close(1000)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 5)
            writer.cancel()

    async def _read_loop(self, activity_timeout: int) -> None:
        waiting_for_pong = False
        while self._close_code is None:
            wait = PONG_TIMEOUT_SECONDS if waiting_for_pong else activity_timeout
            try:
                message = await asyncio.wait_for(self.websocket.receive(), wait)
            except TimeoutError:
                if waiting_for_pong:
                    self.close(ErrorCode.PONG_NOT_RECEIVED)
                    return
                waiting_for_pong = True
                self.send(frames.ping())
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
                    self._invalid("Invalid frame: not UTF-8")
                    continue
            self._handle(text)

    # -- inbound --------------------------------------------------------------------------
    def _handle(self, text: str) -> None:
        try:
            frame = frames.parse(text)
        except ValueError:
            self._invalid("Invalid JSON: a frame must be an object with an event")
            return
        name: str = frame["event"]
        data = frame.get("data")
        if name == "pusher:ping":
            self.send(frames.pong())
        elif name == "pusher:pong":
            pass
        elif name == "pusher:subscribe":
            self._subscribe(data if isinstance(data, dict) else {})
        elif name == "pusher:unsubscribe":
            channel = data.get("channel") if isinstance(data, dict) else None
            if isinstance(channel, str):
                self.provider.hub.unsubscribe(self, channel)
        elif name == "pusher:signin":
            self._signin(data if isinstance(data, dict) else {})
        elif name.startswith("client-"):
            self._client_event(name, frame.get("channel"), data)
        # Other events are ignored, as Pusher ignores them.

    def _invalid(self, message: str) -> None:
        # Each costs a parse and an answer: a socket sending nothing else is closed, not served.
        now = time.monotonic()
        window = INVALID_FRAME_WINDOW_SECONDS
        self._invalid_times = [t for t in self._invalid_times if now - t < window]
        self._invalid_times.append(now)
        limit = self.provider.settings.max_invalid_frames
        if len(self._invalid_times) <= limit:
            self.send(frames.error(message))
            return
        self.send(
            frames.error(
                f"Too many invalid frames: more than {limit} in {window:g} seconds",
                TOO_MANY_INVALID_FRAMES,
            )
        )
        self.close(TOO_MANY_INVALID_FRAMES)

    def _principal(self) -> Principal:
        return principals.ANONYMOUS if self.user_id is None else principals.user(self.user_id)

    def _subscribe(self, data: dict[str, Any]) -> None:
        provider = self.provider
        raw_channel = data.get("channel")
        label = raw_channel if isinstance(raw_channel, str) else ""
        if label.startswith(frames.SERVER_TO_USER_PREFIX):
            self._subscribe_server_to_user(label)
            return
        try:
            channel = validate_channel(raw_channel, provider.limits)
        except RelayError as exc:
            self.send(
                frames.subscription_error(
                    label, kind="InvalidChannel", message=exc.detail, status=400
                )
            )
            return
        if provider.hub.is_subscribed(self, channel):
            return  # pusher-js never resubscribes; a duplicate changes nothing
        limit = provider.settings.max_subscriptions_per_connection
        if self._subscription_count() >= limit:
            self.send(
                frames.subscription_error(
                    channel,
                    kind="TooManySubscriptions",
                    message=f"this connection is subscribed to {limit} channels, the limit",
                    status=400,
                )
            )
            return
        kind = channel_kind(channel)
        presence: PresenceData | None = None
        if kind is ChannelKind.PUBLIC:
            decision = self.policy.decide(self._principal(), Action.SUBSCRIBE, channel)
            if isinstance(decision, Deny):
                self._refuse(channel, decision.reason, 403)
                return
        else:
            channel_data = data.get("channel_data") if kind is ChannelKind.PRESENCE else None
            if kind is ChannelKind.PRESENCE and not isinstance(channel_data, str):
                self._refuse(channel, "presence subscriptions need channel_data", 401)
                return
            if not signing.verify_channel_auth(
                provider.settings.app_key,
                provider.app_secret,
                data.get("auth"),
                socket_id=self.socket_id,
                channel=channel,
                channel_data=channel_data,
            ):
                self._refuse(channel, "Invalid signature", 401)
                return
            if channel_data is not None:
                presence = answers.parse_channel_data(channel_data)
                if presence is None:
                    self._refuse(channel, "channel_data must hold a string user_id", 400)
                    return
                self.user_id = self.user_id or presence.user_id
        roster = provider.hub.subscribe(self, channel, presence)
        self.send(frames.subscription_succeeded(channel, roster))

    def _subscription_count(self) -> int:
        # The #server-to-user- channel pusher-js joins by itself after signin is not counted.
        own = frames.SERVER_TO_USER_PREFIX + self.signed_in if self.signed_in else None
        return len(self.channels) - (own in self.channels)

    def _subscribe_server_to_user(self, channel: str) -> None:
        # pusher-js subscribes to its own #server-to-user- channel after pusher:signin.
        if self.signed_in is None or channel != frames.SERVER_TO_USER_PREFIX + self.signed_in:
            self._refuse(channel, "only a signed-in user's own #server-to-user- channel", 403)
            return
        if not self.provider.hub.is_subscribed(self, channel):
            self.provider.hub.subscribe(self, channel)
        self.send(frames.subscription_succeeded(channel))

    def _refuse(self, channel: str, message: str, status: int) -> None:
        self.send(
            frames.subscription_error(channel, kind="AuthError", message=message, status=status)
        )

    def _signin(self, data: dict[str, Any]) -> None:
        provider = self.provider
        user_data = data.get("user_data")
        if not isinstance(user_data, str) or not signing.verify_user_auth(
            provider.settings.app_key,
            provider.app_secret,
            data.get("auth"),
            socket_id=self.socket_id,
            user_data=user_data,
        ):
            self.send(frames.error("Invalid signin signature", ErrorCode.UNAUTHORIZED))
            return
        try:
            user_id = orjson.loads(user_data)["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            user_id = None
        if not isinstance(user_id, str) or not user_id:
            self.send(frames.error("user_data must hold a string id", ErrorCode.UNAUTHORIZED))
            return
        self.user_id = self.signed_in = user_id
        self.send(frames.signin_success(user_data))

    def _client_event(self, name: str, channel: object, data: object) -> None:
        provider = self.provider
        if not isinstance(channel, str) or not provider.hub.is_subscribed(self, channel):
            self.send(frames.error("Client event rejected: not subscribed to that channel"))
            return
        if channel_kind(channel) not in (ChannelKind.PRIVATE, ChannelKind.PRESENCE):
            self.send(frames.error("Client events are only for private and presence channels"))
            return
        now = time.monotonic()
        self._event_times = [t for t in self._event_times if now - t < 1.0]
        if len(self._event_times) >= CLIENT_EVENTS_PER_SECOND:
            self.send(
                frames.error("Client event rejected: rate limit", ErrorCode.CLIENT_EVENT_RATE_LIMIT)
            )
            return
        try:
            validate_event_name(name, provider.limits, client=True)
            encoded = encode_data(data)
            check_payload_size(encoded, provider.limits)
            if self.schemas is not None:
                self.schemas.check(channel, name, encoded)
        except RelayError as exc:
            self.send(frames.error(f"Client event rejected: {exc.detail}"))
            return
        decision = self.policy.decide(self._principal(), Action.CLIENT_EVENT, channel)
        if isinstance(decision, Deny):
            self.send(frames.error(f"Client event rejected: {decision.reason}"))
            return
        self._event_times.append(now)
        user_id = self.user_id if channel_kind(channel) is ChannelKind.PRESENCE else None
        provider.broadcast(
            Delivery(name, channel, encoded, exclude=self.socket_id, user_id=user_id)
        )
