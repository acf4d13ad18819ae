"""What a client of `make offline`'s stack needs (infra/offline.py): its ports, the URLs and
pusher-js settings they make, the stack's own credentials, and the commands `make offline`
prints, which the apigateway end-to-end tests run as printed."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

STAGE = "offline"
PREFIX = f"realtime-relay-{STAGE}"  # serverless.yml's tablePrefix for the stage
# The offline stack's own credentials: published, like the development defaults, and accepted
# because the stack never leaves this machine.
APP_ID = "4242"
APP_KEY = "offline-key"
APP_SECRET = "offline-app-secret-0123456789"  # noqa: S105
JWT_SECRET = "offline-jwt-secret-0123456789abcdef0123456789"  # noqa: S105
API_KEY = "offline-api-key-0123456789"
SECRETS = {
    "RELAY_APP_ID": APP_ID,
    "RELAY_APP_KEY": APP_KEY,
    "RELAY_APP_SECRET": APP_SECRET,
    "RELAY_JWT_SECRET": JWT_SECRET,
    "RELAY_API_KEYS": API_KEY,
}


class Endpoints(NamedTuple):
    """The ports each server of the stack listens on (127.0.0.1), and what clients make of them."""

    http: int = 3000  # the HTTP API: the relay's routes
    websocket: int = 3001  # the WebSocket API: pusher-js connects here
    functions: int = 3002  # serverless-offline's Lambda invoke endpoint
    moto: int = 3003

    @property
    def base(self) -> str:
        """The relay's base URL: the HTTP API."""
        return f"http://127.0.0.1:{self.http}"

    @property
    def ws_url(self) -> str:
        """The WebSocket API's URL: the stage is its path."""
        return f"ws://127.0.0.1:{self.websocket}/{STAGE}"

    def ws_path(self, token: str | None) -> str:
        """pusher-js's wsPath: the stage, then the user's token in the query (API Gateway's
        $connect sees no headers); pusher-js appends /app/{key}?... after `path=`."""
        return f"/{STAGE}?token={token}&path=" if token else f"/{STAGE}"

    def token_env(self) -> dict[str, str]:
        """What `relay token` needs to mint tokens this stack accepts."""
        return {"RELAY_JWT_SECRET": JWT_SECRET}

    def listener_env(self) -> dict[str, str]:
        """What examples/listen.mjs needs (and RELAY_TOKEN: $connect takes no anonymous user)."""
        return {"RELAY_URL": self.base, "RELAY_WS_URL": self.ws_url, "RELAY_APP_KEY": APP_KEY}

    def publisher_env(self) -> dict[str, str]:
        """What `relay publish --url <base>` needs: the backend's API key."""
        return {"RELAY_API_KEYS": API_KEY}

    def describe(self) -> list[str]:
        """What a client needs, as `make offline` prints it."""

        def sh(env: Mapping[str, str], *command: str) -> str:
            return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), *command])

        token = f"$({sh(self.token_env(), '.venv/bin/relay token --user 42')})"
        listen = sh(self.listener_env(), f"RELAY_TOKEN={token}", "node examples/listen.mjs news")
        publish = sh(
            self.publisher_env(),
            f'.venv/bin/relay publish --url {self.base} news headline \'{{"text": "hi"}}\'',
        )
        pusher = (
            f"new Pusher('{APP_KEY}', {{ cluster: 'local', wsHost: '127.0.0.1', "
            f"wsPort: {self.websocket}, wsPath: `{self.ws_path('${userJwt}')}`, "
            "forceTLS: false, enabledTransports: ['ws'], channelAuthorization: { "
            f"endpoint: '{self.base}/auth/channel', "
            "headers: { Authorization: `Bearer ${userJwt}` } } })"
        )
        return [
            f"HTTP API (the relay's base URL): {self.base}",
            f"WebSocket API: {self.ws_url} (a user's JWT in ?token=)",
            f"pusher-js: {pusher}",
            f"backend API key (X-API-Key): {API_KEY}",
            f"listen: {listen}",
            f"publish: {publish}",
        ]


DEFAULT_ENDPOINTS = Endpoints()
