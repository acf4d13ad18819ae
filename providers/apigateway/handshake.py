"""pusher:connection_established, although API Gateway cannot send during $connect.

pusher-js waits for this first frame before it does anything, and API Gateway refuses posts to a
connection until its $connect handler has returned (410 GoneException, as for a closed one). So
$connect stores the connection, invokes the `handshake` function asynchronously
(InvocationType=Event: the invoke returns at once, the function runs on its own) and returns 200.
The handshake function posts the frame, and while the post is refused retries every 20 ms,
doubling to 250 ms, for at most APIGW_HANDSHAKE_WAIT_SECONDS; it stops early once the connection
row is gone ($disconnect ran). The first post usually lands 20-100 ms after the upgrade.

Under serverless-offline the same invoke goes to its Lambda endpoint (AWS_ENDPOINT_URL_LAMBDA),
and its management endpoint, like API Gateway, answers 410 until $connect has returned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from core import aws
from core.errors import ConfigurationError
from providers.pusherproto import frames

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from providers.apigateway.provider import ApiGatewayProvider

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 0.02
MAX_DELAY_SECONDS = 0.25
CHECK_ROW_EVERY = 8  # refused posts between two looks at the connection row


async def start(provider: ApiGatewayProvider, connection_id: str, socket_id: str) -> None:
    """Invoke the handshake function for a connection $connect just stored."""
    function = provider.gateway.handshake_function
    if not function:
        raise ConfigurationError("APIGW_HANDSHAKE_FUNCTION: the function that greets connections")
    payload = orjson.dumps({"connection_id": connection_id, "socket_id": socket_id})
    await aws.call(
        provider.functions,
        "invoke",
        "could not start the handshake function",
        FunctionName=function,
        InvocationType="Event",
        Payload=payload,
    )


def parse(event: dict[str, Any]) -> tuple[str, str]:
    """(connection_id, socket_id) from the handshake function's event; ValueError otherwise."""
    connection_id, socket_id = event.get("connection_id"), event.get("socket_id")
    if not isinstance(connection_id, str) or not isinstance(socket_id, str):
        raise ValueError("a handshake event has connection_id and socket_id")
    return connection_id, socket_id


async def greet(
    provider: ApiGatewayProvider,
    connection_id: str,
    socket_id: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Post connection_established until the connection takes it; False if it never did."""
    frame = frames.connection_established(
        socket_id, provider.gateway.activity_timeout_seconds
    ).encode()
    deadline = clock() + provider.gateway.handshake_wait_seconds
    delay = FIRST_DELAY_SECONDS
    refused = 0
    while True:
        answer = await provider.api.post(connection_id, frame)
        if answer.ok:
            return True
        if not (answer.gone or answer.retryable):
            log.warning("handshake: the management API refused the post (%s)", answer.code)
            return False
        refused += 1
        if clock() + delay > deadline:
            log.warning("handshake: the connection never accepted posts; giving up")
            return False
        if refused % CHECK_ROW_EVERY == 0 and not await _still_there(provider, connection_id):
            return False
        await sleep(delay)
        delay = min(MAX_DELAY_SECONDS, delay * 2)


async def _still_there(provider: ApiGatewayProvider, connection_id: str) -> bool:
    # $disconnect removes the row: a client that left before its greeting needs none.
    return await provider.store.connection(connection_id) is not None
