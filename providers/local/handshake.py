"""What a local socket is told before its Pusher session starts, whichever transport serves it
(the lean socket server of `relay serve`, socket_server.py; the ASGI route under any other ASGI
server, app/local/routes.py).

Refusals come after the WebSocket handshake, as Pusher's do: a browser shows a script nothing of a
refused handshake, while pusher-js acts on a close code (4000-4099: do not retry, 4100-4199: retry
after a backoff, 4200-4299: retry at once).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from providers.local.admission import Refusal, Ticket
from providers.pusherproto import frames
from providers.pusherproto.frames import ErrorCode

if TYPE_CHECKING:
    from providers.local.provider import LocalProvider

PONG_TIMEOUT_SECONDS = 30  # after our pusher:ping, the client has this long to answer (4201)
SERVER_FULL = "the relay holds as many sockets and streams as it is allowed; retry later"


def refusal(key: str, app_key: str, protocol: str | None) -> tuple[int, str] | None:
    """Why `/app/{key}?protocol=...` cannot be served: (close code, message), or None."""
    if not hmac.compare_digest(key.encode(), app_key.encode()):
        return ErrorCode.APP_NOT_FOUND, f"App key {key[:64]} not in this cluster"
    if protocol is None:
        return ErrorCode.NO_PROTOCOL, "No protocol version supplied"
    if not protocol.isdigit():
        return ErrorCode.INVALID_VERSION, "Invalid version string"
    if not frames.MIN_PROTOCOL_VERSION <= int(protocol) <= frames.PROTOCOL_VERSION:
        return ErrorCode.UNSUPPORTED_PROTOCOL, f"Unsupported protocol version {protocol[:8]}"
    return None


def admit(provider: LocalProvider, address: str | None) -> Ticket | tuple[int, str]:
    """A place for one more socket from `address`, or (close code, message)."""
    if provider.draining:  # a socket that got in just before the listener closed
        return ErrorCode.GENERIC_RECONNECT, "Server shutting down: reconnect"
    admitted = provider.admission.admit(address)
    if admitted is Refusal.SERVER_FULL:
        return ErrorCode.OVER_CAPACITY, f"Over capacity: {SERVER_FULL}"
    if admitted is Refusal.ADDRESS_FULL:
        return ErrorCode.APP_OVER_CONNECTION_QUOTA, (
            f"Over connection quota: {provider.admission.per_address} connections are open "
            "from this address"
        )
    return admitted
