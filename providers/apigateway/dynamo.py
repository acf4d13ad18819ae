"""What the apigateway provider's tables share: the client, the call wrapper, TTL-aware reads.

boto3 is synchronous, so each call runs in a worker thread; a failed condition becomes Conflict,
any other failure ProviderUnavailable (a 503 to an HTTP caller, a logged 500 to API Gateway).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from core.errors import ProviderUnavailable
from providers.apigateway import aws

if TYPE_CHECKING:
    from collections.abc import Callable

    from providers.apigateway.settings import ApiGatewaySettings


class Conflict(Exception):
    """A conditional write found the row not as expected."""


def s(value: str) -> dict[str, str]:
    """A DynamoDB string."""
    return {"S": value}


def n(value: int) -> dict[str, str]:
    """A DynamoDB number."""
    return {"N": str(value)}


def optional(item: dict[str, Any], name: str) -> str | None:
    """A scalar attribute as text, or None when absent."""
    value = item.get(name)
    return None if value is None else str(next(iter(value.values())))


class Tables:
    """The connections, subscriptions and presence tables of one deployment."""

    def __init__(
        self,
        settings: ApiGatewaySettings,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._connections = settings.table("connections")
        self._subscriptions = settings.table("subscriptions")
        self._presence = settings.table("presence")
        self._clock = clock

    @property
    def client(self) -> Any:
        """The DynamoDB client (created on first use)."""
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await asyncio.to_thread(
                getattr(self.client, operation), **params
            )
        except Exception as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(operation) from exc
            raise ProviderUnavailable(f"DynamoDB {operation} failed") from exc
        return result

    def _live(self, item: dict[str, Any]) -> bool:
        # TTL deletes lazily (DynamoDB may keep an expired row for days): check it ourselves.
        expires = item.get("expires_at")
        return expires is None or int(expires["N"]) > self._clock()
