"""Choosing the store from the settings (RELAY_STORE)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import ConfigurationError

if TYPE_CHECKING:
    from core.settings import Settings
    from core.stores.base import Store


def create_store(settings: Settings) -> Store:
    """memory (one process), redis (RELAY_REDIS_URL) or dynamodb (RELAY_DYNAMODB_TABLE)."""
    if settings.store == "redis":
        if not settings.redis_url:
            raise ConfigurationError("RELAY_REDIS_URL: required when RELAY_STORE=redis")
        from core.stores.redis import RedisStore

        return RedisStore(settings.redis_url)
    if settings.store == "dynamodb":
        if not settings.dynamodb_table:
            raise ConfigurationError("RELAY_DYNAMODB_TABLE: required when RELAY_STORE=dynamodb")
        from core.stores.dynamodb import DynamoStore

        return DynamoStore(settings.dynamodb_table)
    from core.stores.memory import MemoryStore

    return MemoryStore(max_bytes=settings.memory_store_max_bytes)
