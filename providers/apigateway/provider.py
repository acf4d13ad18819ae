"""API Gateway WebSockets as the relay's provider: no third-party service at all.

Clients are pusher-js connected to API Gateway, speaking Pusher protocol 7 with pusherproto's
session (the local provider's too), driven by protocol.py with its state in the tables through
port.py. The relay signs their subscriptions like the local provider does, and publishes by posting
to every subscribed connection through the management API (fanout.py), slices of large channels
going through SQS (slices.py). State is in DynamoDB (store.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Literal, Self

from core import aws
from core.errors import ConfigurationError, PayloadTooLarge, ProviderError
from core.provider import CachedEvent, Limits, Member, Message, Occupancy, Provider, Receipt
from core.settings import read_env
from core.validation import ChannelKind, channel_kind
from providers.apigateway.fanout import Fanout, Report
from providers.apigateway.management import ManagementApi
from providers.apigateway.port import drop
from providers.apigateway.settings import MAX_MESSAGE_BYTES, ApiGatewaySettings
from providers.apigateway.slices import Slice, SliceQueue
from providers.apigateway.store import Store
from providers.outbound.sigv4 import EnvironmentCredentials, Signer
from providers.pusherproto import frames
from providers.pusherproto.cache import CACHE_SECONDS, is_cache_channel, kept
from providers.pusherproto.server import RelaySigned, relay_limits

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.settings import Settings

log = logging.getLogger(__name__)
TABLES: tuple[Literal["connections", "subscriptions", "presence"], ...] = (
    "connections",
    "subscriptions",
    "presence",
)
CHECK_NAME = "realtime-relay-check"  # `relay check --live` reads its rows: there are none


class ApiGatewayProvider(RelaySigned, Provider):
    """Pusher-protocol clients on API Gateway WebSockets, fanned out from DynamoDB."""

    name = "apigateway"

    def __init__(
        self,
        settings: Settings,
        gateway: ApiGatewaySettings,
        *,
        store: Store | None = None,
        api: ManagementApi | None = None,
        queue: SliceQueue | None = None,
        functions: Any = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.limits = relay_limits(
            Limits(
                max_payload_bytes=gateway.max_payload_bytes,
                max_channel_name=164,
                max_event_name=200,
            ),
            settings,
        )
        self.store = store or Store(gateway)
        self.queue = queue or SliceQueue(gateway.queue)
        self._api = api
        self._functions = functions
        self._fanout: Fanout | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Read APIGW_* (tables, endpoint, fan-out tuning); AWS credentials come from the role."""
        return cls(settings, read_env(ApiGatewaySettings))

    @property
    def api(self) -> ManagementApi:
        """The management API client (created on first use)."""
        if self._api is None:
            endpoint = self.gateway.management_endpoint
            if endpoint is None:
                raise ConfigurationError(
                    "APIGW_ENDPOINT: set it, or APIGW_API_ID and APIGW_STAGE, to reach connections"
                )
            signer = Signer(EnvironmentCredentials(), region=self.gateway.region)
            self._api = ManagementApi(
                endpoint,
                signer,
                timeout=self.gateway.post_timeout_seconds,
                max_connections=self.gateway.fanout_concurrency,
            )
        return self._api

    @property
    def functions(self) -> Any:
        """The Lambda client that starts the handshake function (created on first use)."""
        return self._functions or aws.client("lambda")

    @property
    def client_events_per_second(self) -> int:
        """APIGW_CLIENT_EVENTS_PER_SECOND (10, Pusher's limit)."""
        return self.gateway.client_events_per_second

    @property
    def fanout(self) -> Fanout:
        """Posts to many connections with a bounded pool."""
        if self._fanout is None:
            self._fanout = Fanout(
                self.api,
                concurrency=self.gateway.fanout_concurrency,
                attempts=self.gateway.post_attempts,
            )
        return self._fanout

    # -- delivery -------------------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        """Fan each message out to its channel; every frame is size-checked before any post.

        Channels are served concurrently (the management API's pool bounds the posts in flight),
        the messages of one channel in order. Encrypted channels' data is sealed first."""
        messages = self.seal(messages)
        await self._keep_cached(messages)
        by_channel: dict[str, list[tuple[Message, str]]] = {}
        for m in messages:
            frame = frames.event(m.name, m.channel, m.data)
            check_message_size(frame)
            by_channel.setdefault(m.channel, []).append((m, frame))

        async def deliver(channel: str, queue: list[tuple[Message, str]]) -> None:
            for message, frame in queue:
                report = await self.broadcast(channel, frame, exclude_socket=message.socket_id)
                if report.failed and not report.sent:
                    raise ProviderError(
                        f"no connection of {channel} took the event ({len(report.failed)} failed)",
                        retryable=True,
                    )

        results = await asyncio.gather(
            *(deliver(c, q) for c, q in by_channel.items()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [Receipt(m.channel, m.name, m.id) for m in messages]

    async def _keep_cached(self, messages: Sequence[Message]) -> None:
        """A cache channel's newest message is kept (as sent) before it goes out, so that a
        subscriber joining meanwhile gets it either way."""
        last = {m.channel: m for m in messages if is_cache_channel(m.channel)}
        until = time.time() + CACHE_SECONDS
        for m in last.values():
            await self.store.keep(m.channel, m.name, m.data, until=until)

    async def broadcast(
        self,
        channel: str,
        frame: str,
        *,
        exclude_socket: str | None = None,
        exclude_connection: str | None = None,
    ) -> Report:
        """Post a frame to the channel's subscribers: the first slice here, the rest via SQS."""
        check_message_size(frame)
        data = frame.encode()
        first: asyncio.Task[Report] | None = None
        later: list[list[str]] = []
        async for page in self.store.subscribers(channel, page_size=self.gateway.fanout_slice):
            ids = [
                s.connection_id
                for s in page
                if s.connection_id != exclude_connection
                and (exclude_socket is None or s.socket_id != exclude_socket)
            ]
            if first is None:
                # Posting starts while the next pages are read.
                first = asyncio.create_task(self.fanout.send(ids, data))
            elif ids:
                later.append(ids)
        if first is None:
            return Report()
        try:
            if later:
                await self.queue.enqueue(channel, frame, later)
        finally:
            report = await first
        await self.cleanup(report.gone)
        return report

    async def send(self, connection_id: str, frame: str) -> Report:
        """Post a frame to one connection (retried like any post; cleaned up if gone)."""
        check_message_size(frame)
        report = await self.fanout.send([connection_id], frame.encode())
        await self.cleanup(report.gone)
        return report

    async def deliver_slice(self, part: Slice) -> Report:
        """Post one queued slice (the fan-out worker's job)."""
        check_message_size(part.frame)
        report = await self.fanout.send(part.connections, part.frame.encode())
        await self.cleanup(report.gone)
        return report

    async def cleanup(self, gone: Sequence[str]) -> int:
        """Forget connections a post found gone, with their subscriptions and presence.

        Their member_removed posts may find more gone connections, cleaned up in turn; each
        cleanup deletes a row first, so the cascade ends with the connections that are gone."""
        dropped = 0
        for connection_id in gone:
            if await drop(self.store, self, connection_id, counts=self.counts):
                dropped += 1
        return dropped

    async def close(self, connection_id: str) -> None:
        """Close one connection; API Gateway then invokes $disconnect for it."""
        answer = await self.api.delete(connection_id)
        if answer.gone:
            await drop(self.store, self, connection_id, counts=self.counts)

    async def send_to_user(self, user_id: str, event: str, data: str) -> None:
        """An event on the user's #server-to-user- channel, joined by pusher-js after signin."""
        channel = frames.SERVER_TO_USER_PREFIX + user_id
        frame = frames.event(event, channel, data)
        await self.broadcast(channel, frame)

    async def terminate_user(self, user_id: str) -> None:
        """Close every connection signed in as the user."""
        channel = frames.SERVER_TO_USER_PREFIX + user_id
        async for page in self.store.subscribers(channel, page_size=self.gateway.fanout_slice):
            await asyncio.gather(*(self.close(s.connection_id) for s in page))

    @property
    def counts(self) -> bool:
        """Whether subscription counts are announced (RELAY_SUBSCRIPTION_COUNT_EVENTS)."""
        return self.settings.subscription_count_events

    # -- queries --------------------------------------------------------------------------------
    async def members(self, channel: str) -> list[Member]:
        """The present users, from the presence table."""
        return [Member(user_id, info) for user_id, info in await self.store.members(channel)]

    async def occupancy(self, channel: str) -> Occupancy:
        """Subscription count, and user count on presence channels."""
        count = await self.store.count(channel)
        users = None
        if channel_kind(channel) is ChannelKind.PRESENCE:
            users = len(await self.store.members(channel))
        return Occupancy(occupied=count > 0, subscription_count=count, user_count=users)

    async def channels(self, prefix: str = "") -> dict[str, Occupancy]:
        """The occupied channels, from each channel's count row (a Scan of the subscriptions
        table); user counts for presence channels from the presence table."""
        found: dict[str, Occupancy] = {}
        for channel, count in (await self.store.channel_counts(prefix)).items():
            users = None
            if channel_kind(channel) is ChannelKind.PRESENCE:
                users = len(await self.store.members(channel))
            found[channel] = Occupancy(occupied=True, subscription_count=count, user_count=users)
        return found

    async def last_event(self, channel: str) -> CachedEvent | None:
        """A cache channel's kept event, from its cache row."""
        return kept(await self.store.cached(channel), time.time())

    async def check(self) -> str:
        """Read each of the three tables (for a channel and a connection nobody has): answered
        only where the tables exist and the credentials may read them."""
        await self.store.connection(CHECK_NAME)
        await self.store.count(CHECK_NAME)
        await self.store.members(CHECK_NAME)
        tables = ", ".join(self.gateway.table(kind) for kind in TABLES)
        return f"DynamoDB ({self.gateway.region}) answered reads of {tables}"

    async def aclose(self) -> None:
        """Close the management API's sockets."""
        if self._api is not None:
            await self._api.aclose()


def check_message_size(frame: str) -> int:
    """Refuse a frame over API Gateway's 128 KB message limit, before anything is posted."""
    size = len(frame.encode())
    if size > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(
            f"the frame is {size} bytes; API Gateway delivers at most {MAX_MESSAGE_BYTES}",
            limit=MAX_MESSAGE_BYTES,
            size=size,
        )
    return size
