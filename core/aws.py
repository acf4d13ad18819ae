"""boto3 clients, built on first use and kept for the life of the Lambda container, and the one
way the relay calls them.

boto3 is imported here and nowhere else in the relay, inside `client`, so importing the relay
never loads it: a provider or store that makes no AWS call never pays for it at a cold start.
Endpoints follow boto3's own variables (AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_SQS,
AWS_ENDPOINT_URL_LAMBDA), which is how the tests point them at moto and serverless-offline.
boto3 blocks, so each call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

from core.errors import ProviderUnavailable

CONDITION_FAILED = "ConditionalCheckFailedException"

_building = threading.Lock()


class Conflict(Exception):
    """A conditional write found the item not as expected."""


@functools.cache
def client(service: str) -> Any:
    """The shared client for an AWS service: bounded timeouts, up to three retries (botocore's
    standard mode), a pool wide enough for a fan-out's concurrent calls."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=2,
        read_timeout=10,
        max_pool_connections=32,
    )
    with _building:  # boto3's default session is not safe to build clients from two threads
        return boto3.client(service, config=config)


async def call(aws: Any, operation: str, failure: str, /, **params: Any) -> dict[str, Any]:
    """Run one operation of a boto3 client. A failed condition raises Conflict; any other failure
    ProviderUnavailable(`failure`) (a 503 to an HTTP caller), the cause chained."""
    try:
        result: dict[str, Any] = await asyncio.to_thread(getattr(aws, operation), **params)
    except Exception as exc:
        if error_code(exc) == CONDITION_FAILED:
            raise Conflict(operation) from exc
        raise ProviderUnavailable(failure) from exc
    return result


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None
