"""The relay's metrics on Lambda: CloudWatch embedded metric format (EMF) lines on stdout.

Lambda sends a function's stdout to CloudWatch Logs, which turns each EMF line into metrics: no
agent, no API call, nothing to import. The same events as `relay serve`'s /metrics (app/metrics.py)
are gathered during an invocation and written as a few JSON lines once its answer is built
(app/lambda_handler.py): requests and their latency by route shape and status class, auth
decisions, messages published, provider calls and their latency. Namespace `RealtimeRelay`
(RELAY_METRICS_NAMESPACE), dimension `Service` = realtime-relay on every metric.

Written directly rather than through Powertools for AWS Lambda's Metrics: the format is a small,
documented JSON shape (checked against Powertools' own output in tests/unit/app/test_emf.py),
while Powertools' import costs about 55 ms of a cold start and 7.6 MB of the package (measured
here), which the cold-start target (bench/README.md) cannot spare.

    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from app.metrics import auth_result, endpoint_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    from fastapi import FastAPI

    from app.relay import Relay

NAMESPACE = "RealtimeRelay"
SERVICE = "realtime-relay"
MAX_VALUES = 100  # EMF: at most 100 values in one metric's array
MAX_METRICS = 100  # EMF: at most 100 metrics in one directive


class EmfMetrics:
    """One invocation's measurements, written as EMF lines by `flush`."""

    def __init__(self, relay: Relay, *, out: TextIO | None = None) -> None:
        self.namespace = NAMESPACE
        self._out = out
        self._requests: Counter[tuple[str, str]] = Counter()
        self._latency: defaultdict[str, list[float]] = defaultdict(list)
        self._auth: Counter[tuple[str, str]] = Counter()
        self._published: Counter[str] = Counter()
        self._missed: Counter[str] = Counter()
        # (provider, outcome): each provider's calls, through its own breaker's observer
        self._calls: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
        for name, guard in relay.breakers.items():
            guard.observer = partial(self._observe_call, name)

    # -- the same calls as app/metrics.Metrics -----------------------------------------------
    def observe(self, path: str, status: int, seconds: float, problem: str | None = None) -> None:
        """One HTTP answer."""
        endpoint = endpoint_of(path)
        self._requests[(endpoint, f"{status // 100}xx")] += 1
        if endpoint != "/v1/stream":
            self._latency[endpoint].append(seconds * 1000)
        if endpoint.startswith("/auth/"):
            self._auth[(endpoint, auth_result(status))] += 1

    def published(self, taken: Mapping[str, int]) -> None:
        """Messages each provider took."""
        self._published.update(taken)

    def missed(self, missed: Mapping[str, int]) -> None:
        """Messages of a mirrored publish each provider did not take."""
        self._missed.update(missed)

    def _observe_call(self, provider: str, seconds: float, ok: bool) -> None:
        self._calls[(provider, "ok" if ok else "failed")].append(seconds * 1000)

    def start(self) -> None:
        """Nothing runs in the background on Lambda."""

    async def stop(self) -> None:
        """Nothing to stop."""

    # -- writing ------------------------------------------------------------------------------
    def lines(self, *, now_ms: int | None = None) -> list[bytes]:
        """This invocation's EMF lines (and forget them)."""
        stamp = int(time.time() * 1000) if now_ms is None else now_ms
        found: list[bytes] = []
        for (endpoint, status), count in sorted(self._requests.items()):
            values: dict[str, Any] = {"Requests": (count, "Count")}
            if self._latency.get(endpoint):  # once per endpoint, with its first status class
                values["RequestLatency"] = (self._latency.pop(endpoint), "Milliseconds")
            found += self._line(stamp, {"Endpoint": endpoint, "StatusClass": status}, values)
        for (endpoint, result), count in sorted(self._auth.items()):
            found += self._line(
                stamp, {"Endpoint": endpoint, "Result": result}, {"AuthDecisions": (count, "Count")}
            )
        per_provider: defaultdict[str, dict[str, Any]] = defaultdict(dict)
        for name, count in sorted(self._published.items()):
            if count:
                per_provider[name]["PublishedMessages"] = (count, "Count")
        for name, count in sorted(self._missed.items()):
            if count:
                per_provider[name]["MirrorMissedMessages"] = (count, "Count")
        for (name, outcome), latencies in sorted(self._calls.items()):
            metric = "ProviderCallLatency" if outcome == "ok" else "FailedProviderCallLatency"
            per_provider[name][metric] = (latencies, "Milliseconds")
        for name, values in per_provider.items():
            found += self._line(stamp, {"Provider": name}, values)
        self._requests.clear()
        self._latency.clear()
        self._auth.clear()
        self._published.clear()
        self._missed.clear()
        self._calls.clear()
        return found

    def flush(self) -> None:
        """Write the lines where Lambda collects them (stdout)."""
        out = self._out or sys.stdout
        for line in self.lines():
            out.write(line.decode() + "\n")
        out.flush()

    def _line(
        self, stamp: int, dimensions: dict[str, str], metrics: dict[str, tuple[Any, str]]
    ) -> list[bytes]:
        dims = {"Service": SERVICE, **dimensions}
        lines = []
        names = list(metrics)
        for start in range(0, len(names), MAX_METRICS):
            record: dict[str, Any] = dict(dims)
            directives = []
            for name in names[start : start + MAX_METRICS]:
                value, unit = metrics[name]
                if isinstance(value, list):
                    value = value[-MAX_VALUES:]  # the newest, should an invocation hold more
                record[name] = value
                directives.append({"Name": name, "Unit": unit})
            record["_aws"] = {
                "Timestamp": stamp,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [list(dims)],
                        "Metrics": directives,
                    }
                ],
            }
            lines.append(orjson.dumps(record))
        return lines


def install(app: FastAPI, relay: Relay) -> EmfMetrics:
    """Measure this app for EMF (the Lambda runtime flushes after each invocation)."""
    metrics = EmfMetrics(relay)
    app.state.metrics = metrics
    return metrics
