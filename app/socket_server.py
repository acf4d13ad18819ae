"""`relay serve`'s WebSocket protocol on the local provider: the lean socket server
(providers/local/socket_server.py) in uvicorn's place, with the shell's decisions plugged in.

uvicorn's HTTP protocol parses the upgrade request and hands the transport to the class given as
`ws`; this module makes that class. Each socket then costs one asyncio protocol and its session's
state: no ASGI scope, middleware stack, task or queue per connection (bench/README.md measured
~40 KB per idle socket through ASGI). What the HTTP middleware does for a socket happens here
instead: the origin allowlist (app/origins.py), the client's address behind trusted proxies
(Relay.client_ip) and the access log line. Under any other ASGI server the `/app/{key}` route of
app/local/routes.py serves the same protocol through ASGI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from app.middleware import log_socket
from app.origins import OriginGuard
from providers.local.socket_server import PusherSocket

if TYPE_CHECKING:
    from app.relay import Relay
    from providers.local.provider import LocalProvider
    from providers.pusherproto.config import SessionConfig


class RelayShell:
    """The relay's answers to what a lean socket asks its shell (SocketShell)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.guard = OriginGuard(origins=relay.settings.origins)
        self._config: SessionConfig | None = None

    def origin_allowed(self, origin: str | None) -> bool:
        """The allowlist the HTTP middleware applies to every other socket and auth request."""
        return self.guard.allowed(origin)

    def client_ip(
        self, headers: list[tuple[bytes, bytes]], peer: tuple[str, int] | None
    ) -> str | None:
        """Relay.client_ip, on the handshake's headers and the peer."""
        scope: dict[str, Any] = {"type": "websocket", "headers": headers, "client": peer}
        return self.relay.client_ip(HTTPConnection(scope))

    def session_config(self) -> SessionConfig:
        """One configuration for every socket (built on the first)."""
        if self._config is None:
            relay = self.relay
            provider: LocalProvider = relay.provider.part("local")  # type: ignore[assignment]
            self._config = provider.session_config(relay.authorizer, relay.policy, relay.schemas)
        return self._config

    def access(self, path: str, status: int, started: float) -> None:
        """The access log's line for the socket."""
        log_socket(path, status, started)


def lean_socket_protocol(relay: Relay, *, max_frame_bytes: int) -> type[PusherSocket]:
    """The class uvicorn instantiates for each WebSocket upgrade (its `ws` setting)."""
    provider: LocalProvider = relay.provider.part("local")  # type: ignore[assignment]
    shell = RelayShell(relay)

    class RelaySocket(PusherSocket):
        __slots__ = ()

        def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None):
            super().__init__(
                provider,
                shell,
                registry=server_state.connections,
                max_frame_bytes=max_frame_bytes,
                loop=_loop,
            )

    return RelaySocket
