"""The three servers the exchanges run against, behind one small interface.

* `local`: `relay serve` on the embedded local provider (tests/e2e/harness.RelayProcess);
* `apigateway`: the WebSocket API's Lambda handlers under serverless-offline, over moto
  (`make offline`'s stack, infra/offline.py, started by tests/e2e/offline.start_stack),
  anonymous sockets allowed as on local;
* `soketi`: the reference Pusher-protocol server (tests/e2e/soketi.SoketiProcess).

All three run one app with the same id, key and secret (the offline stack's, infra/offline.py,
which the secret scanner already knows), so one script signs for any of them. The relays sign
what their clients ask for through `POST /auth/channel` and `/auth/user` with a user's JWT, as
pusher-js does; soketi has no such endpoint, so its signatures come from the official `pusher`
SDK, an implementation of Pusher's signing independent of the relay's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx
import pusher

from core.settings import Settings
from core.tokens import mint_dev_token
from infra.offline import API_KEY, APP_ID, APP_KEY, APP_SECRET, JWT_SECRET, SECRETS, STAGE

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from tests.conformance.patterns import User

HTTP_SECONDS: Final = 30.0  # a cold Lambda function answers its first request in seconds
# The channel policy both relays run. Client events on private channels are for "anyone": the
# socket is anonymous on both relays, and the signed subscription already proved the user.
POLICY: Final = """
[[rule]]
pattern = "private-{name}"
subscribe = ["user"]
publish = ["backend"]
client_events = ["anyone"]
options = { schemas = { "client-order" = { type = "object", required = ["id"] } } }

[[rule]]
pattern = "presence-{name}"
subscribe = ["user"]
publish = ["backend"]
client_events = ["user"]
presence_info = ["name"]

# A public channel for signed-in users only: an anonymous socket is refused.
[[rule]]
pattern = "members-{name}"
subscribe = ["user"]
publish = ["backend"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
publish = ["backend"]
"""
# What a server offers beyond the protocol itself (Exchange.needs):
REST = "rest"  # the relay's POST /v1/events and /v1/users/{id}/events
PUSHER_HTTP = "pusher_http"  # Pusher's HTTP API (/apps/{id}/events), as the server SDKs call it
WATCHLISTS = "watchlists"  # pusher:signin's watchlist and pusher_internal:watchlist_events
POLICY_ON_SOCKETS = "policy"  # the channel policy: public channels refused, client event schemas
# The servers, and what each offers: known before any is started, to choose the tests.
FEATURES: Final[Mapping[str, frozenset[str]]] = {
    "local": frozenset({REST, PUSHER_HTTP, POLICY_ON_SOCKETS, WATCHLISTS}),
    "apigateway": frozenset({REST, PUSHER_HTTP, POLICY_ON_SOCKETS, WATCHLISTS}),
    "soketi": frozenset({PUSHER_HTTP}),
}


class Server(ABC):
    """One server under test: where its sockets connect, how it signs, how a backend publishes."""

    name: str
    settle_seconds: float  # how long frames caused by an earlier frame may still be on their way
    app_key: str = APP_KEY

    @abstractmethod
    def ws_url(self) -> str:
        """The URL a raw Pusher protocol 7 client opens."""

    @abstractmethod
    def channel_auth(self, socket_id: str, channel: str, user: User) -> dict[str, str]:
        """`auth` (and `channel_data` for presence) for the user's subscription on a socket."""

    @abstractmethod
    def user_auth(self, socket_id: str, user: User) -> dict[str, str]:
        """`auth` and `user_data` of a pusher:signin as the user."""

    @abstractmethod
    def publish(
        self, channel: str, event: str, data: Any, *, exclude: str | None, via: str | None
    ) -> None:
        """Publish as the backend (through `via`, or the server's own API)."""

    @abstractmethod
    def send_to_user(self, user_id: str, event: str, data: Any) -> None:
        """Send an event to the sockets signed in as the user."""


def _pusher_sdk(port: int) -> pusher.Pusher:
    return pusher.Pusher(
        app_id=APP_ID, key=APP_KEY, secret=APP_SECRET, host="127.0.0.1", port=port, ssl=False
    )


class RelayServer(Server):
    """The relay (local or API Gateway): signatures from its auth routes, publishes over REST."""

    def __init__(
        self,
        name: str,
        *,
        base: str,
        ws_url: str,
        settle_seconds: float,
    ) -> None:
        self.name = name
        self.settle_seconds = settle_seconds
        self._ws_url = ws_url
        self._http = httpx.Client(base_url=base, timeout=HTTP_SECONDS)
        port = httpx.URL(base).port
        self._sdk = _pusher_sdk(port) if PUSHER_HTTP in FEATURES[name] and port else None

    def __enter__(self) -> RelayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def ws_url(self) -> str:
        return self._ws_url

    def _signed(self, path: str, user: User, fields: dict[str, str]) -> dict[str, str]:
        token = mint_dev_token(
            Settings(jwt_secret=JWT_SECRET),
            user_id=user.id,
            name=user.name,
            watchlist=user.watchlist,
        )
        answer = self._http.post(path, data=fields, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text}"
        signed: dict[str, str] = answer.json()
        return signed

    def channel_auth(self, socket_id: str, channel: str, user: User) -> dict[str, str]:
        fields = {"socket_id": socket_id, "channel_name": channel}
        return self._signed("/auth/channel", user, fields)

    def user_auth(self, socket_id: str, user: User) -> dict[str, str]:
        return self._signed("/auth/user", user, {"socket_id": socket_id})

    def publish(
        self, channel: str, event: str, data: Any, *, exclude: str | None, via: str | None
    ) -> None:
        if via == PUSHER_HTTP:
            assert self._sdk is not None, f"{self.name} has no Pusher HTTP API"
            self._sdk.trigger(channel, event, data, socket_id=exclude)
            return
        body = {"name": event, "channel": channel, "data": data, "socket_id": exclude}
        self._backend("/v1/events", body)

    def send_to_user(self, user_id: str, event: str, data: Any) -> None:
        self._backend(f"/v1/users/{quote(user_id, safe='')}/events", {"name": event, "data": data})

    def _backend(self, path: str, body: dict[str, Any]) -> None:
        answer = self._http.post(path, json=body, headers={"X-API-Key": API_KEY})
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text}"


class SoketiServer(Server):
    """soketi: signatures and publishes from the official `pusher` SDK."""

    name = "soketi"
    settle_seconds = 0.0

    def __init__(self, port: int) -> None:
        self.port = port
        self._sdk = _pusher_sdk(port)

    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/app/{APP_KEY}?protocol=7"

    def channel_auth(self, socket_id: str, channel: str, user: User) -> dict[str, str]:
        member = {"user_id": user.id, "user_info": user.info}
        custom = member if channel.startswith("presence-") else None
        signed: dict[str, str] = self._sdk.authenticate(channel, socket_id, custom)
        return signed

    def user_auth(self, socket_id: str, user: User) -> dict[str, str]:
        signed: dict[str, str] = self._sdk.authenticate_user(
            socket_id, {"id": user.id, "user_info": user.info}
        )
        return signed

    def publish(
        self, channel: str, event: str, data: Any, *, exclude: str | None, via: str | None
    ) -> None:
        assert via in (None, PUSHER_HTTP), f"soketi has no {via} API"
        # The SDK JSON-encodes everything but strings, as the relay's REST API does.
        self._sdk.trigger(channel, event, data, socket_id=exclude)

    def send_to_user(self, user_id: str, event: str, data: Any) -> None:
        self._sdk.send_to_user(user_id, event, data)


def relay_environment(folder: Path) -> dict[str, str]:
    """The relays' settings: the shared app, the conformance policy (written into `folder`), no
    HTTP rate limits (the suite signs many subscriptions quickly; rate limits have suites of
    their own)."""
    policy = folder / "policy.toml"
    policy.write_text(POLICY)
    return {**SECRETS, "RELAY_POLICY_FILE": str(policy), "RELAY_RATE_LIMITS": "false"}


# API Gateway takes sockets without ?token= here, as local takes every socket: the same script,
# from the same anonymous sockets, runs on both.
ANONYMOUS_SOCKETS: Final = {"APIGW_ALLOW_ANONYMOUS": "true"}


def soketi_environment() -> dict[str, str]:
    """soketi limits set to Pusher's, which the relays apply: 164-character channel names,
    10 KB of event data, 10 client events per second per socket."""
    return {
        "SOKETI_CHANNEL_LIMITS_MAX_NAME_LENGTH": "164",
        "SOKETI_EVENT_MAX_SIZE_IN_KB": "10",
        "SOKETI_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC": "10",
    }


def apigateway_ws_url(ws_port: int) -> str:
    """An anonymous socket, pusher-js's path in `path` as API Gateway sees it."""
    return f"ws://127.0.0.1:{ws_port}/{STAGE}?path=/app/{APP_KEY}%3Fprotocol%3D7"
