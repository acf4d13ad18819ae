"""The relay's metrics on Lambda: CloudWatch embedded metric format lines, checked against the
format's specification and against Powertools for AWS Lambda's own output for the same metric."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from app import lambda_handler
from app.emf import MAX_VALUES, NAMESPACE, SERVICE
from app.main import create_app
from tests import lambda_runtime
from tests.e2e.apigw_support import aws_environment, event
from tests.unit.app.test_lambda_handler import LOCAL_ENV

if TYPE_CHECKING:
    from collections.abc import Iterator

    from core.settings import Settings


def check_emf(record: dict[str, Any]) -> None:
    """The specification's rules: a Timestamp, and every dimension and metric a member."""
    directive = record["_aws"]
    assert isinstance(directive["Timestamp"], int)
    [metrics] = directive["CloudWatchMetrics"]
    assert isinstance(metrics["Namespace"], str)
    for dimension_set in metrics["Dimensions"]:
        assert 1 <= len(dimension_set) <= 30
        assert all(isinstance(record[d], str) for d in dimension_set)
    assert 1 <= len(metrics["Metrics"]) <= 100
    for metric in metrics["Metrics"]:
        value = record[metric["Name"]]
        assert isinstance(value, int | float) or (
            isinstance(value, list) and 1 <= len(value) <= MAX_VALUES
        )


async def test_an_invocations_requests_publishes_and_provider_calls_become_emf(
    relay_settings: Settings, relay_api_key: str
) -> None:
    app = create_app(relay_settings, emf=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
        body = {"name": "e", "channels": ["news", "scores"], "data": 1}
        answer = await http.post("/v1/events", json=body, headers={"X-API-Key": relay_api_key})
        assert answer.status_code == 200
        form = {"socket_id": "1.2", "channel_name": "private-room"}
        assert (await http.post("/auth/channel", data=form)).status_code == 401
    records = [orjson.loads(line) for line in app.state.metrics.lines(now_ms=1_800_000_000_000)]
    for record in records:
        check_emf(record)
        assert record["Service"] == SERVICE
        assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    by_dims = {
        tuple(sorted((k, v) for k, v in r.items() if isinstance(v, str) and k != "Service")): r
        for r in records
    }
    events = by_dims[(("Endpoint", "/v1/events"), ("StatusClass", "2xx"))]
    assert events["Requests"] == 1
    assert len(events["RequestLatency"]) == 1
    refused = by_dims[(("Endpoint", "/auth/channel"), ("Result", "unauthenticated"))]
    assert refused["AuthDecisions"] == 1
    provider = by_dims[(("Provider", "local"),)]
    assert provider["PublishedMessages"] == 2
    assert len(provider["ProviderCallLatency"]) == 1
    assert app.state.metrics.lines() == []  # flushed once


def test_the_lines_have_the_shape_powertools_writes(
    capsys: pytest.CaptureFixture[str], relay_settings: Settings
) -> None:
    with single_metric(
        name="PublishedMessages", unit=MetricUnit.Count, value=2, namespace=NAMESPACE
    ) as metric:
        metric.add_dimension(name="Provider", value="local")
    theirs = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    app = create_app(relay_settings, emf=True)
    app.state.metrics.published({"local": 2})
    ours = next(
        orjson.loads(line) for line in app.state.metrics.lines() if b"PublishedMessages" in line
    )
    their_directive = theirs["_aws"]["CloudWatchMetrics"][0]
    our_directive = ours["_aws"]["CloudWatchMetrics"][0]
    assert set(ours["_aws"]) == set(theirs["_aws"]) == {"Timestamp", "CloudWatchMetrics"}
    assert our_directive["Namespace"] == their_directive["Namespace"]
    assert {"Name": "PublishedMessages", "Unit": "Count"} in our_directive["Metrics"]
    assert their_directive["Metrics"][0]["Name"] == "PublishedMessages"
    assert their_directive["Metrics"][0]["Unit"] == "Count"
    assert "Provider" in our_directive["Dimensions"][0]
    assert "Provider" in their_directive["Dimensions"][0]
    # Powertools writes every value as an array; the specification takes a number or an array.
    assert [float(ours["PublishedMessages"])] == theirs["PublishedMessages"] == [2.0]


@pytest.fixture
def local_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    aws_environment(monkeypatch)
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    yield
    lambda_runtime.install()


def test_each_lambda_invocation_writes_its_emf_lines(
    local_lambda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert lambda_handler.handler(event("httpapi_health"), None)["statusCode"] == 200
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    [health] = [line for line in lines if line.get("Endpoint") == "/health"]
    check_emf(health)
    assert health["Requests"] == 1
    assert health["StatusClass"] == "2xx"
