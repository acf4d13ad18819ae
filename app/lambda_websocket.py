"""Lambda entry points of the WebSocket API ($connect, $default, $disconnect), of the handshake
function and of the SQS fan-out worker. Each is small: it parses the event, runs the provider's
coroutine on the container's loop (app.lambda_handler.runtime), and never raises, because an
exception would cost a cold start and tell the client nothing. serverless.yml names them
`app.lambda_websocket.<name>`; providers/apigateway/handlers.py keeps the earlier path."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

# First of the relay's imports: it puts the package's vendored dependencies on sys.path.
from app.lambda_handler import runtime
from providers.apigateway import handshake as greeting
from providers.apigateway import lifecycle
from providers.apigateway.port import drop
from providers.apigateway.protocol import Protocol
from providers.apigateway.slices import Slice

if TYPE_CHECKING:
    from app.relay import Relay
    from providers.apigateway.provider import ApiGatewayProvider

log = logging.getLogger(__name__)

Work = Callable[["Relay", "ApiGatewayProvider"], Coroutine[Any, Any, dict[str, Any]]]
OK: dict[str, Any] = {"statusCode": 200}


def _serve(name: str, work: Work) -> dict[str, Any]:
    try:
        rt = runtime()
        provider = cast("ApiGatewayProvider | None", rt.relay.provider.part("apigateway"))
        if provider is None:
            raise TypeError("neither RELAY_PROVIDER nor RELAY_SECONDARY_PROVIDER is 'apigateway'")
        return rt.run(work(rt.relay, provider))
    except Exception:
        log.exception("%s failed", name)
        return {"statusCode": 500}


def _connection_id(event: dict[str, Any]) -> str:
    return str(event["requestContext"]["connectionId"])


def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """$connect: authenticate `?token=`, store the connection, start the handshake."""
    return _serve(
        "$connect",
        lambda relay, provider: lifecycle.connect(
            provider, event, authenticator=relay.authenticator, origins=relay.settings.origins
        ),
    )


def disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """$disconnect: remove subscriptions and presence, announce member_removed."""

    async def work(relay: Relay, provider: ApiGatewayProvider) -> dict[str, Any]:
        await drop(provider.store, provider, _connection_id(event), counts=provider.counts)
        return OK

    return _serve("$disconnect", work)


def message(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """$default: one Pusher protocol frame; the reply is the route response."""

    async def work(relay: Relay, provider: ApiGatewayProvider) -> dict[str, Any]:
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", errors="replace")
        from app.clientaddr import lambda_source_ip  # here: app.lambda_handler comes first

        config = provider.session_config(relay.authorizer, relay.policy, relay.schemas)
        client_ip = lambda_source_ip(event)  # API Gateway's sourceIp: the rate limit's key
        reply = await Protocol(provider, config).handle(
            _connection_id(event), str(body), client_ip=client_ip
        )
        return OK if reply is None else {"statusCode": 200, "body": reply}

    return _serve("$default", work)


def handshake(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Invoked asynchronously by $connect: post pusher:connection_established."""

    async def work(relay: Relay, provider: ApiGatewayProvider) -> dict[str, Any]:
        connection_id, socket_id = greeting.parse(event)
        greeted = await greeting.greet(provider, connection_id, socket_id)
        return {"statusCode": 200 if greeted else 410}

    return _serve("handshake", work)


def fanout(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS: post each queued slice. A malformed message is logged and dropped, never retried."""

    async def work(relay: Relay, provider: ApiGatewayProvider) -> dict[str, Any]:
        sent = 0
        for record in event.get("Records", []):
            try:
                part = Slice.decode(str(record.get("body", "")))
            except ValueError:
                log.warning("fan-out: dropped a malformed slice")
                continue
            report = await provider.deliver_slice(part)
            sent += report.sent
        # A slice is never redelivered: its posts that succeeded must not be sent twice.
        return {"statusCode": 200, "sent": sent, "batchItemFailures": []}

    return _serve("fanout", work)
