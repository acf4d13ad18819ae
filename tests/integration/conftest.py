"""The real backends of the store interface: the Redis server running here, and DynamoDB as moto
in server mode (a separate process speaking the DynamoDB wire protocol, like the real service).

Redis is not started here: `make test` ensures it runs. When it does not, every Redis test fails
with one line saying what to start; nothing is skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.harness import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REDIS_URL = os.environ.get("RELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Dummy credentials for moto: it accepts any, and none may reach a real AWS account.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "integration-dummy-access-key",
    "AWS_SECRET_ACCESS_KEY": "integration-dummy-secret-0123456789",
    "AWS_DEFAULT_REGION": "us-east-1",
}
TABLE = "relay-integration"
MOTO_START_SECONDS = 20.0


def redis_unreachable(url: str) -> str | None:
    """None if a Redis server answers PING at `url`, else one line saying what to start."""
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        client.ping()
    except RedisError as exc:
        return (
            f"Redis is not reachable at {url} ({exc.__class__.__name__}): start it with "
            "`redis-server --daemonize yes` (make test does), or point RELAY_TEST_REDIS_URL at one"
        )
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the Redis server the tests use; fails (one line) when none answers."""
    problem = redis_unreachable(REDIS_URL)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test run; its keys are deleted at the end."""
    from redis import Redis

    prefix = f"relay-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + MOTO_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto exited: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"moto did not start: {log.read_text(errors='replace')}")


# moto's own `moto_server` is threaded, and moto checks a ConditionExpression then writes the item
# without a lock: two concurrent conditional puts can both succeed, which DynamoDB never allows
# (conditional writes are atomic per item). Serving one request at a time restores that guarantee;
# the store's read-then-conditional-write races still interleave between requests as they would.
MOTO_SERVER = """
import sys
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app,
)
from werkzeug.serving import run_simple

run_simple(
    "127.0.0.1", int(sys.argv[1]), DomainDispatcherApplication(create_backend_app),
    threaded=False, request_handler=MotoRequestHandler,
)
"""


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto in server mode (one request at a time) on a free port, for the whole session."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", MOTO_SERVER, str(port)],
            env={**os.environ, **AWS_ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_listening(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def dynamodb_client(endpoint: str) -> Any:
    """A boto3 DynamoDB client for moto, configured explicitly (no process-wide AWS_* env)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(max_pool_connections=64, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="session")
def dynamodb(moto_endpoint: str) -> Iterator[Any]:
    """A client with the store's table created: `pk` (S) as the hash key, as infra/ declares it."""
    client = dynamodb_client(moto_endpoint)
    try:
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.get_waiter("table_exists").wait(TableName=TABLE)
        yield client
    finally:
        client.close()
