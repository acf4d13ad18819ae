"""What the apigateway provider's tables share: the client, the calls, TTL-aware reads.

Calls go through core/aws.py: a failed condition becomes Conflict, any other AWS failure
ProviderUnavailable (a 503 to an HTTP caller, a logged 500 to API Gateway).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from core import aws
from core.aws import Conflict

if TYPE_CHECKING:
    from collections.abc import Callable

    from providers.apigateway.settings import ApiGatewaySettings

__all__ = ["Conflict", "Tables", "n", "optional", "s"]


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
        """The DynamoDB client (the shared one unless one was given)."""
        return self._client or aws.client("dynamodb")

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return await aws.call(self.client, operation, f"DynamoDB {operation} failed", **params)

    def _live(self, item: dict[str, Any]) -> bool:
        # TTL deletes lazily (DynamoDB may keep an expired row for days): check it ourselves.
        expires = item.get("expires_at")
        return expires is None or int(expires["N"]) > self._clock()
