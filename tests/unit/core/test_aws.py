"""core/aws.py: the one boto3 call (a worker thread; Conflict or ProviderUnavailable, the cause
chained), and the shared clients. (That boto3 stays unloaded until a client is built:
test_lambda_handler.py.)"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from core import aws
from core.errors import ProviderUnavailable


class Table:
    """A client double: records the thread and parameters of each call, or raises."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def put_item(self, **params: Any) -> dict[str, Any]:
        self.calls.append((threading.current_thread().name, params))
        if self.failure is not None:
            raise self.failure
        return {"ConsumedCapacity": {"TableName": params["TableName"]}}


def refused(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "no"}}, "PutItem")


async def test_a_call_runs_in_a_worker_thread_and_returns_the_answer() -> None:
    table = Table()
    found = await aws.call(table, "put_item", "put failed", TableName="t", Item={})
    assert found == {"ConsumedCapacity": {"TableName": "t"}}
    [(thread, params)] = table.calls
    assert thread != threading.current_thread().name
    assert params == {"TableName": "t", "Item": {}}


async def test_a_failed_condition_is_a_conflict() -> None:
    failure = refused(aws.CONDITION_FAILED)
    with pytest.raises(aws.Conflict, match="put_item") as caught:
        await aws.call(Table(failure), "put_item", "put failed", TableName="t")
    assert caught.value.__cause__ is failure


@pytest.mark.parametrize(
    "failure",
    [
        refused("ProvisionedThroughputExceededException"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        RuntimeError("a client double that fails"),
    ],
)
async def test_any_other_failure_is_unavailable_with_its_cause(failure: Exception) -> None:
    with pytest.raises(ProviderUnavailable, match=r"^put failed$") as caught:
        await aws.call(Table(failure), "put_item", "put failed", TableName="t")
    assert caught.value.__cause__ is failure
    assert caught.value.headers() == {"Retry-After": "1"}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (refused("GoneException"), "GoneException"),
        (RuntimeError("x"), None),
        (ClientError({"Error": {"Code": 7}}, "Op"), None),
    ],
)
def test_error_code(error: BaseException, code: str | None) -> None:
    assert aws.error_code(error) == code


def test_one_client_per_service_with_bounded_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws.client.cache_clear()
    try:
        dynamodb = aws.client("dynamodb")
        assert aws.client("dynamodb") is dynamodb
        assert aws.client("sqs") is not dynamodb
        config = dynamodb.meta.config
        assert (config.connect_timeout, config.read_timeout) == (2, 10)
        assert config.retries == {"mode": "standard", "total_max_attempts": 4}  # 3 retries
    finally:
        aws.client.cache_clear()
