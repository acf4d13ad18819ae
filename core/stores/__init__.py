"""Shared state behind one small interface: memory (default), Redis, DynamoDB."""

from core.stores.base import Store
from core.stores.factory import create_store

__all__ = ["Store", "create_store"]
