"""$connect: who is connecting, to which app, with which protocol; then the stored connection.

Browsers cannot set headers on a WebSocket, so the user's token travels in the query string.
pusher-js appends its own path and query (`/app/{key}?protocol=7&client=js...`) to `wsPath`; a
`wsPath` of `/{stage}?token={jwt}&path=` therefore makes API Gateway see the stage as the path,
and `token` plus the whole pusher-js path (inside `path`) as query parameters. Plain `protocol`
parameters (serverless-offline takes any path) are understood too.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from core import principal as principals
from core.errors import ProviderUnavailable, Unauthenticated
from core.origins import AllowedOrigins
from providers.apigateway import handshake
from providers.apigateway.records import Connection
from providers.pusherproto import frames
from providers.pusherproto.state import new_socket_id

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from core.identity import Authenticator
    from core.principal import Principal
    from providers.apigateway.provider import ApiGatewayProvider

log = logging.getLogger(__name__)


def client_path(params: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(app key, protocol version) from the connection's query parameters (None: not given)."""
    key = None
    protocol = params.get("protocol")
    for value in params.values():
        path, _, query = value.partition("?")
        if "/app/" in path:
            key = path.rsplit("/app/", 1)[1].strip("/") or None
            if protocol is None:
                found = parse_qs(query).get("protocol")
                protocol = found[0] if found else None
            break
    return key, protocol


def _response(status: int, reason: str = "") -> dict[str, Any]:
    return {"statusCode": status, "body": reason} if reason else {"statusCode": status}


def refusal(
    provider: ApiGatewayProvider,
    params: Mapping[str, str],
    origin: str | None,
    origins: Collection[str],
) -> dict[str, Any] | None:
    """The response that refuses this connection (origin, app key, protocol), or None."""
    if not AllowedOrigins(origins).allowed(origin):
        return _response(403, "origin not allowed")
    key, protocol = client_path(params)
    app_key = provider.settings.app_key
    if key is not None and not hmac.compare_digest(key.encode(), app_key.encode()):
        return _response(403, "unknown app key")
    if protocol is None or not protocol.isdigit():
        return _response(400, "no protocol version")
    if not frames.MIN_PROTOCOL_VERSION <= int(protocol) <= frames.PROTOCOL_VERSION:
        return _response(400, "unsupported protocol version")
    return None


async def identify(
    authenticator: Authenticator, provider: ApiGatewayProvider, token: str | None
) -> Principal | None:
    """The user behind `?token=` (anonymous only where allowed); None when refused."""
    if not token:
        return principals.ANONYMOUS if provider.gateway.allow_anonymous else None
    try:
        principal = await authenticator.authenticate(authorization=None, token=token)
    except Unauthenticated:
        return None
    return principal if principal.is_user else None


def _repeats(multi: object) -> bool:
    """Whether a multi-value query (name -> values) holds a name twice, in any letter case."""
    if not isinstance(multi, dict):
        return False
    names = [str(name).lower() for name in multi]
    counts = [len(values) if isinstance(values, list) else 1 for values in multi.values()]
    return len(set(names)) < len(names) or any(count > 1 for count in counts)


async def connect(
    provider: ApiGatewayProvider,
    event: dict[str, Any],
    *,
    authenticator: Authenticator,
    origins: Collection[str],
) -> dict[str, Any]:
    """Handle $connect: refuse (401/403/400) and store nothing, or store and start the handshake."""
    connection_id = str(event["requestContext"]["connectionId"])
    if _repeats(event.get("multiValueQueryStringParameters")):
        # API Gateway keeps the last of repeated names in queryStringParameters; which `token`
        # or `protocol` was meant is ambiguous, so the connection is refused.
        return _response(400, "a query parameter repeats")
    params = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    refused = refusal(provider, params, headers.get("origin"), origins)
    if refused is not None:
        return refused
    principal = await identify(authenticator, provider, params.get("token"))
    if principal is None:
        return _response(401, "a valid token is required")
    exp = principal.claims.get("exp")
    now = int(time.time())
    connection = Connection(
        connection_id=connection_id,
        socket_id=new_socket_id(),
        expires_at=now + provider.gateway.row_ttl_seconds,
        user_id=principal.id if principal.is_user else None,
        token_expires=int(exp) if isinstance(exp, int | float) else None,
    )
    await provider.store.add_connection(connection)
    try:
        await handshake.start(provider, connection_id, connection.socket_id)
    except ProviderUnavailable:
        # Without the greeting pusher-js would wait forever: refuse, so that it retries.
        await provider.store.remove_connection(connection_id)
        log.exception("$connect: the handshake could not be started")
        return _response(500)
    return _response(200)
