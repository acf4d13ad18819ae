"""Pusher Channels: signs pusher-js subscriptions and publishes through Pusher's HTTP API."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Self

from core.provider import (
    Limits,
    Member,
    Message,
    Occupancy,
    PresenceData,
    Provider,
    Receipt,
    chunked,
)
from core.settings import read_env
from core.validation import ChannelKind, channel_kind
from providers.outbound.lazy import Lazy
from providers.pusher import webhooks
from providers.pusher.coalescer import Coalescer
from providers.pusher.settings import PusherSettings
from providers.pusherproto import answers, encryption, frames

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import httpx

    from core.provider import ChannelEvent
    from core.settings import Settings
    from providers.pusher.api import PusherApi

# Pusher's documented limits for one HTTP call.
CHANNELS_PER_EVENT_CALL = 100
EVENTS_PER_BATCH_CALL = 10


class PusherProvider(Provider):
    """Pusher Channels, or a self-hosted Pusher-protocol server (PUSHER_HOST)."""

    name = "pusher"

    def __init__(self, settings: PusherSettings, *, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_channel_name=164,
            max_event_name=200,
            supports_encrypted_channels=settings.master_key is not None,
            encryption_key_variable="PUSHER_ENCRYPTION_MASTER_KEY_BASE64",
        )
        self._api = Lazy(lambda: _pusher_api(settings, http))
        self.batches: Coalescer[dict[str, str]] = Coalescer(
            self._send_batch,
            batch_size=EVENTS_PER_BATCH_CALL,
            max_in_flight=settings.max_in_flight,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Read PUSHER_* (the relay's own settings hold nothing Pusher needs)."""
        return cls(read_env(PusherSettings))

    @property
    def api(self) -> PusherApi:
        """The HTTP API client, built on the first call to Pusher (providers/outbound/lazy.py)."""
        return self._api.get()

    @property
    def _secret(self) -> str:
        return self.settings.secret.get_secret_value()

    # -- client answers -------------------------------------------------------------------
    def authorize_channel(
        self, *, socket_id: str, channel: str, presence: PresenceData | None
    ) -> dict[str, str]:
        """Channel auth; encrypted channels also get their shared secret."""
        master_key = self.settings.master_key
        secret = None
        if channel_kind(channel) is ChannelKind.PRIVATE_ENCRYPTED and master_key is not None:
            secret = encryption.shared_secret(channel, master_key)
        return answers.channel_answer(
            self.settings.key,
            self._secret,
            socket_id=socket_id,
            channel=channel,
            presence=presence,
            shared_secret=secret,
        )

    def authenticate_user(
        self, *, socket_id: str, user: PresenceData, watchlist: Sequence[str] = ()
    ) -> dict[str, str]:
        """User auth for pusher:signin."""
        return answers.user_answer(
            self.settings.key, self._secret, socket_id=socket_id, user=user, watchlist=watchlist
        )

    # -- publishing -----------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        """Send in order: consecutive single-channel events ride coalesced batch calls; an event
        on many channels goes out as events calls (100 channels each) once what precedes it has.
        Encrypted channels' data is sealed first, each with its channel's key (an encrypted
        channel is always an event's only one: core.validation)."""
        sealed = encryption.seal(messages, self.settings.master_key, self.limits)
        singles: list[dict[str, str]] = []
        for (name, data, socket_id), channels in _runs(sealed):
            if len(channels) == 1:
                singles.append(self._event(channels[0], name, data, socket_id))
                continue
            if singles:  # keep per-channel order: what came first is sent first
                await self.batches.submit(singles)
                singles = []
            await _all(
                [
                    self.api.post("/events", self._multi(name, data, socket_id, chunk))
                    for chunk in chunked(channels, CHANNELS_PER_EVENT_CALL)
                ]
            )
        if singles:
            await self.batches.submit(singles)
        return [Receipt(m.channel, m.name, m.id) for m in messages]

    @staticmethod
    def _multi(
        name: str, data: str, socket_id: str | None, channels: Sequence[str]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "data": data, "channels": list(channels)}
        if socket_id is not None:
            body["socket_id"] = socket_id
        return body

    @staticmethod
    def _event(channel: str, name: str, data: str, socket_id: str | None) -> dict[str, str]:
        event = {"channel": channel, "name": name, "data": data}
        if socket_id is not None:
            event["socket_id"] = socket_id
        return event

    async def _send_batch(self, events: list[dict[str, str]]) -> None:
        await self.api.post("/batch_events", {"batch": events})

    async def send_to_user(self, user_id: str, event: str, data: str) -> None:
        """Pusher's send-to-user: an event on the user's #server-to-user- channel."""
        channel = frames.SERVER_TO_USER_PREFIX + user_id
        await self.api.post("/events", {"name": event, "data": data, "channels": [channel]})

    async def terminate_user(self, user_id: str) -> None:
        """Pusher closes every connection the user signed in on."""
        await self.api.post(f"/users/{user_id}/terminate_connections", {})

    # -- queries --------------------------------------------------------------------------
    async def members(self, channel: str) -> list[Member]:
        """Pusher's users query (ids only: Pusher keeps user_info on the sockets)."""
        found = await self.api.get(f"/channels/{channel}/users")
        users = found.get("users", []) if isinstance(found, dict) else []
        return [Member(str(u["id"])) for u in users if isinstance(u, dict) and "id" in u]

    async def occupancy(self, channel: str) -> Occupancy:
        """Pusher's channel query, with the counts the channel kind allows."""
        info = ["subscription_count"]
        if channel_kind(channel) is ChannelKind.PRESENCE:
            info.append("user_count")
        found = await self.api.get(f"/channels/{channel}", {"info": ",".join(info)})
        found = found if isinstance(found, dict) else {}
        return Occupancy(
            occupied=bool(found.get("occupied")),
            subscription_count=found.get("subscription_count"),
            user_count=found.get("user_count"),
        )

    async def check(self) -> str:
        """A signed GET of the app's channels: answered only for the right id, key and secret."""
        found = await self.api.get("/channels")  # a refusal raises (PusherVerdicts)
        channels = found.get("channels") if isinstance(found, dict) else None
        count = len(channels) if isinstance(channels, dict) else 0
        return (
            f"{self.settings.base_url} accepted app {self.settings.app_id}'s key and secret "
            f"(GET /channels: {count} occupied)"
        )

    # -- webhooks -------------------------------------------------------------------------
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ChannelEvent]:
        """Verify, then normalize."""
        webhooks.verify(self.settings.key, self._secret, headers, body)
        return webhooks.normalize(body)

    async def aclose(self) -> None:
        """Finish calls in flight, then close the pool."""
        await self.batches.aclose()
        await self._api.aclose()


def _pusher_api(settings: PusherSettings, http: httpx.AsyncClient | None) -> PusherApi:
    from providers.pusher.api import PusherApi

    return PusherApi(settings, http=http)


def _runs(
    messages: Sequence[Message],
) -> list[tuple[tuple[str, str, str | None], list[str]]]:
    """Consecutive messages of one event (same name, data and socket) with distinct channels."""
    runs: list[tuple[tuple[str, str, str | None], list[str]]] = []
    for m in messages:
        key = (m.name, m.data, m.socket_id)
        if runs and runs[-1][0] == key and m.channel not in runs[-1][1]:
            runs[-1][1].append(m.channel)
        else:
            runs.append((key, [m.channel]))
    return runs


async def _all(calls: list[Any]) -> None:
    """Run the calls concurrently; every one finishes before the first failure is raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
