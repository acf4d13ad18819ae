"""boto3 clients, created on first use and kept for the life of the Lambda container.

boto3 is imported here and nowhere else in the provider, inside the function that needs it, so
importing the relay for another provider never loads it (and this one loads it on first call).
Endpoints follow boto3's own variables (AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_SQS,
AWS_ENDPOINT_URL_LAMBDA), which is how the tests point them at moto and serverless-offline.
"""

from __future__ import annotations

import threading
from typing import Any

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def client(service: str) -> Any:
    """The shared client for an AWS service (thread-safe: store calls run in worker threads)."""
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        if service not in _clients:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=2,
                read_timeout=10,
                max_pool_connections=32,
            )
            _clients[service] = boto3.client(service, config=config)
        return _clients[service]


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def override(service: str, replacement: Any) -> None:
    """Use `replacement` as the service's client (tests inject doubles here)."""
    with _lock:
        _clients[service] = replacement


def reset() -> None:
    """Forget every client (tests that change endpoints or mocks)."""
    with _lock:
        _clients.clear()
