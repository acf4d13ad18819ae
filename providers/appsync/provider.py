"""AWS AppSync Events: the relay's publishes go to the Event API, one channel path per call.

Clients connect to AppSync itself (docs/providers/appsync.md); the relay decides their connect,
subscribe and publish requests when AppSync asks (providers/appsync/authorizer.py, handlers.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import orjson

from core.errors import ConfigurationError, PayloadTooLarge
from core.provider import Limits, Message, Provider, Receipt, chunked
from core.settings import read_env
from providers.appsync import channels
from providers.appsync.settings import EVENTS_PER_PUBLISH, MAX_EVENT_BYTES, AppSyncSettings
from providers.outbound.lazy import Lazy

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import httpx

    from core.settings import Settings
    from providers.appsync.api import AppSyncEvents
    from providers.outbound.sigv4 import Credentials, Signer

MAX_CHANNEL_NAME = 4 * 50 + 3  # four segments of 50 and their dots


class AppSyncProvider(Provider):
    """An AppSync Event API, its channels under one namespace."""

    name = "appsync"

    def __init__(
        self,
        settings: AppSyncSettings,
        *,
        http: httpx.AsyncClient | None = None,
        credentials: Callable[[], Credentials | None] | None = None,
    ) -> None:
        base_url = settings.base_url
        if base_url is None:
            raise ConfigurationError(
                "APPSYNC_HTTP_DOMAIN: required (the Event API's HTTP domain), or APPSYNC_ENDPOINT"
            )
        self.settings = settings
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_channel_name=MAX_CHANNEL_NAME,
            max_event_name=200,
        )
        self._api = Lazy(lambda: _events_api(settings, base_url, http, credentials))

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Read APPSYNC_* (the relay's own settings hold nothing AppSync needs)."""
        return cls(read_env(AppSyncSettings))

    @property
    def api(self) -> AppSyncEvents:
        """The HTTP client, built on the first publish (providers/outbound/lazy.py)."""
        return self._api.get()

    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        """Send in order: consecutive messages on one channel ride one call, 5 events at most;
        every path and size is checked before anything is sent."""
        calls: list[tuple[str, list[str]]] = []
        for index, message in enumerate(messages):
            path = channels.to_path(self.settings.namespace, message.channel)
            event = encode_event(message)
            if len(event.encode()) > MAX_EVENT_BYTES:
                raise PayloadTooLarge(
                    f"the event is over AppSync's {MAX_EVENT_BYTES} bytes",
                    limit=MAX_EVENT_BYTES,
                ).of_batch_item(index)
            if calls and calls[-1][0] == path:
                calls[-1][1].append(event)
            else:
                calls.append((path, [event]))
        for path, events in calls:
            for chunk in chunked(events, EVENTS_PER_PUBLISH):
                await self.api.publish(path, chunk)
        return [Receipt(m.channel, m.name, m.id) for m in messages]

    async def check(self) -> str:
        """One small event on `<namespace>/relay-check` (AppSync has no read call to try the
        credentials with, and refuses an empty publish): a subscriber of that channel, if the
        policy lets anyone be one, sees `{"event": "relay-check"}`."""
        path = f"{self.settings.namespace}/relay-check"
        await self.api.publish(path, [orjson.dumps({"event": "relay-check"}).decode()])
        return f"{self.settings.base_url} accepted a publish to {path}"

    async def aclose(self) -> None:
        """Close the pool if it was built."""
        await self._api.aclose()


def encode_event(message: Message) -> str:
    """One event as AppSync carries it: stringified JSON `{"event", "data", "id"?}`, the data as
    the value it was published as (a JSON value, or the string)."""
    data = orjson.Fragment(message.data) if message.json else message.data
    body: dict[str, object] = {"event": message.name, "data": data}
    if message.id is not None:
        body["id"] = message.id
    return orjson.dumps(body).decode()


def _events_api(
    settings: AppSyncSettings,
    base_url: str,
    http: httpx.AsyncClient | None,
    credentials: Callable[[], Credentials | None] | None,
) -> AppSyncEvents:
    from providers.appsync.api import AppSyncEvents

    signer = None
    if settings.api_key is None:
        signer = _signer(settings, credentials)
    return AppSyncEvents(settings, base_url, signer=signer, http=http)


def _signer(
    settings: AppSyncSettings, credentials: Callable[[], Credentials | None] | None
) -> Signer:
    from providers.outbound.sigv4 import EnvironmentCredentials, Signer

    return Signer(
        credentials or EnvironmentCredentials(), region=settings.region, service="appsync"
    )
