"""Shared state behind one small interface: memory (default), Redis, DynamoDB."""

from app.stores.base import Store
from app.stores.factory import create_store

__all__ = ["Store", "create_store"]
