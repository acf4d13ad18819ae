"""`GET /metrics` of `relay serve`: the Prometheus text format, from prometheus-client.

What is measured, and where (docs/operations.md lists each metric and what to alert on):

    relay_http_requests_total{endpoint, status}       every HTTP answer (Front, app/middleware.py)
    relay_http_request_duration_seconds{endpoint}     the same, SSE streams left out
    relay_auth_decisions_total{endpoint, result, reason}   /auth/*: allowed, unauthenticated,
                                                      forbidden, rate_limited, invalid, error;
                                                      reason: the problem type's slug
    relay_published_messages_total{provider}          messages each provider took
    relay_mirror_missed_messages_total{provider}      mirrored messages this provider missed
    relay_provider_call_duration_seconds{provider, outcome}   each provider call (the breaker's)
    relay_connections{kind}, relay_subscriptions, relay_presence_members   local, this host
    relay_circuit_breaker_state{provider}             0 closed, 1 half-open, 2 open
    relay_webhook_queue_events                        webhook events waiting (this process)
    relay_webhook_events_total{outcome}               delivered, failed (given up), dropped

Endpoints are labelled by route shape (`/v1/channels/{channel}`), never by a raw path, so that the
label set stays bounded whatever clients send. With `relay serve --workers N` every worker writes
to prometheus-client's multiprocess files (PROMETHEUS_MULTIPROC_DIR, set by app/workers.py) and a
scrape answered by any worker sums them; the gauges are refreshed by each worker every few seconds.

The endpoint is the backend's: it answers only a relay API key (`Authorization: Bearer <key>`, as
Prometheus' `authorization` scrape setting sends it, or `X-API-Key`). It is imported only where
`relay serve` runs with RELAY_METRICS on; the Lambda functions never import prometheus-client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from typing import TYPE_CHECKING, Any

from fastapi import Request  # noqa: TC002 - FastAPI reads the route's annotation at runtime
from fastapi.responses import Response

from app.relay import relay_of
from core.errors import Forbidden, RelayError
from core.webhooks import sink as webhook_sink
from core.webhooks.dispatcher import Dispatcher

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from fastapi import FastAPI
    from starlette.requests import HTTPConnection

    from app.relay import Relay

REFRESH_SECONDS = 5.0
# Seconds: an auth answer is ~1 ms, a publish to a provider tens; the top buckets catch timeouts.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}
_SHAPES = (
    (re.compile(r"^/v1/channels/[^/]+/members$"), "/v1/channels/{channel}/members"),
    (re.compile(r"^/v1/channels/[^/]+/messages$"), "/v1/channels/{channel}/messages"),
    (re.compile(r"^/v1/channels/[^/]+$"), "/v1/channels/{channel}"),
    (re.compile(r"^/v1/users/[^/]+/(events|terminate)$"), r"/v1/users/{user_id}/\1"),
    (re.compile(r"^/v1/webhooks/[^/]+$"), "/v1/webhooks/{provider}"),
    (re.compile(r"^/apps/[^/]+/channels/[^/]+/users$"), "/apps/{app_id}/channels/{name}/users"),
    (re.compile(r"^/apps/[^/]+/channels/[^/]+$"), "/apps/{app_id}/channels/{name}"),
    (
        re.compile(r"^/apps/[^/]+/users/[^/]+/terminate_connections$"),
        "/apps/{app_id}/users/terminate",
    ),
    (re.compile(r"^/users/[^/]+/terminate_connections$"), "/apps/{app_id}/users/terminate"),
    (re.compile(r"^/apps/[^/]+/(events|batch_events|channels)$"), r"/apps/{app_id}/\1"),
    (re.compile(r"^/docs/assets/[^/]+$"), "/docs/assets"),
)
_FIXED = frozenset(
    {
        "/health",
        "/metrics",
        "/docs",
        "/openapi.json",
        "/auth/channel",
        "/auth/user",
        "/auth/token",
        "/v1/events",
        "/v1/batch",
        "/v1/stream",
        "/console",
    }
)
_AUTH_RESULTS = {401: "unauthenticated", 403: "forbidden", 429: "rate_limited"}


def _all_errors() -> list[type[RelayError]]:
    found: list[type[RelayError]] = []
    todo: list[type[RelayError]] = [RelayError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


# The problem slugs an auth answer can carry (the label's values stay a fixed set).
_REASONS = frozenset(
    {
        *(cls.slug for cls in _all_errors()),
        "invalid-request",
        "request-timeout",
        "internal",
    }
)


def endpoint_of(path: str) -> str:
    """The route shape a path belongs to (`other` for anything the relay does not serve)."""
    if path in _FIXED:
        return path
    for pattern, shape in _SHAPES:
        if pattern.match(path):
            return pattern.sub(shape, path)
    return "other"


def auth_reason(status: int, problem: str | None) -> str:
    """Why an /auth/* answer refused: its problem type's slug (a fixed set: core/errors.py);
    `none` for an answer that allowed."""
    if status < 300:
        return "none"
    return problem if problem is not None and problem in _REASONS else "other"


def auth_result(status: int) -> str:
    """An /auth/* answer's decision."""
    if status < 300:
        return "allowed"
    if status in _AUTH_RESULTS:
        return _AUTH_RESULTS[status]
    return "invalid" if status < 500 else "error"


class Metrics:
    """The relay's instruments, in this process's registry (or the multiprocess files)."""

    def __init__(self, relay: Relay) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.relay = relay
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        registry = None if self.multiprocess else CollectorRegistry(auto_describe=True)
        self.registry = registry
        kw: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self.requests = Counter(
            "relay_http_requests",
            "HTTP answers by route shape and status.",
            ["endpoint", "status"],
            **kw,
        )
        self.latency = Histogram(
            "relay_http_request_duration_seconds",
            "Seconds to answer an HTTP request (SSE streams left out).",
            ["endpoint"],
            buckets=BUCKETS,
            **kw,
        )
        self.auth = Counter(
            "relay_auth_decisions",
            "Answers of the auth endpoints, by result and the refusal's problem type.",
            ["endpoint", "result", "reason"],
            **kw,
        )
        self.messages = Counter(
            "relay_published_messages", "Messages the provider took.", ["provider"], **kw
        )
        self.mirror_missed = Counter(
            "relay_mirror_missed_messages",
            "Messages of a mirrored publish this provider did not take (the other did).",
            ["provider"],
            **kw,
        )
        calls = Histogram(
            "relay_provider_call_duration_seconds",
            "Seconds of each call to the provider, by outcome.",
            ["provider", "outcome"],
            buckets=BUCKETS,
            **kw,
        )
        gauge: dict[str, Any] = dict(kw)
        if self.multiprocess:
            gauge["multiprocess_mode"] = "livesum"
        self.connections = Gauge(
            "relay_connections", "Open WebSockets and SSE streams (local).", ["kind"], **gauge
        )
        self.subscriptions = Gauge(
            "relay_subscriptions", "Channel subscriptions held (local).", **gauge
        )
        self.members = Gauge(
            "relay_presence_members",
            "Presence members of this process's channels (local).",
            **gauge,
        )
        self.webhook_queue = Gauge(
            "relay_webhook_queue_events",
            "Webhook events waiting in this process's schedule (held leaves included).",
            **gauge,
        )
        self.webhook_events = Counter(
            "relay_webhook_events",
            "Webhook events done with: delivered to every URL, failed (given up after every "
            "attempt), or dropped (the memory queue was full).",
            ["outcome"],
            **kw,
        )
        self._webhooks_seen = {"delivered": 0, "failed": 0, "dropped": 0}
        breaker: dict[str, Any] = dict(kw)
        if self.multiprocess:
            breaker["multiprocess_mode"] = "max"
        self.breaker = Gauge(
            "relay_circuit_breaker_state",
            "0 closed, 1 half-open, 2 open.",
            ["provider"],
            **breaker,
        )
        for name, guard in relay.breakers.items():  # a pair's two, each labelled with its name
            guard.observer = _observer(calls.labels(name, "ok"), calls.labels(name, "failed"))
        self._task: asyncio.Task[None] | None = None
        self._apart: Any = None  # the listener of RELAY_METRICS_LISTEN, when this process runs it

    # -- what the relay tells it --------------------------------------------------------------
    def observe(self, path: str, status: int, seconds: float, problem: str | None = None) -> None:
        """One HTTP answer (Front's `finally`), and its problem's slug when it is one."""
        endpoint = endpoint_of(path)
        self.requests.labels(endpoint, str(status)).inc()
        if endpoint != "/v1/stream":
            self.latency.labels(endpoint).observe(seconds)
        if endpoint.startswith("/auth/"):
            self.auth.labels(endpoint, auth_result(status), auth_reason(status, problem)).inc()

    def published(self, taken: Mapping[str, int]) -> None:
        """Messages a publish handed to each provider."""
        for provider, count in taken.items():
            self.messages.labels(provider).inc(count)

    def missed(self, missed: Mapping[str, int]) -> None:
        """Messages of a mirrored publish a provider did not take."""
        for provider, count in missed.items():
            self.mirror_missed.labels(provider).inc(count)

    # -- gauges -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the gauges off the provider and the breaker."""
        for name, guard in self.relay.breakers.items():
            self.breaker.labels(name).set(BREAKER_STATES.get(guard.state, 0))
        self._refresh_webhooks()
        provider: Any = self.relay.provider.part("local")
        if provider is None:
            return
        self.connections.labels("websocket").set(len(provider.connections))
        self.connections.labels("sse").set(len(provider.streams))
        hub = provider.hub
        channels = hub.channel_names()
        self.subscriptions.set(sum(hub.subscriber_count(c) for c in channels))
        self.members.set(sum(len(hub.members(c)) for c in channels if c.startswith("presence-")))

    def _refresh_webhooks(self) -> None:
        """The webhook queue's depth, and the events it finished since the last refresh."""
        dispatcher = webhook_sink.installed()
        if not isinstance(dispatcher, Dispatcher):
            return
        self.webhook_queue.set(len(dispatcher.schedule))
        totals = {
            "delivered": dispatcher.delivered,
            "failed": dispatcher.undelivered,
            "dropped": dispatcher.dropped,
        }
        for outcome, total in totals.items():
            # max(0): a sink replaced by another (a test's, a restart) starts from zero again
            self.webhook_events.labels(outcome).inc(max(0, total - self._webhooks_seen[outcome]))
        self._webhooks_seen = totals

    async def run(self) -> None:
        """Refresh the gauges every few seconds (each worker its own), until cancelled."""
        while True:
            self.refresh()
            await asyncio.sleep(REFRESH_SECONDS)

    def start(self) -> None:
        """Start refreshing (lifespan), and the listener of RELAY_METRICS_LISTEN in a single
        process (with workers, the parent runs it: app/workers.py)."""
        self._task = asyncio.get_running_loop().create_task(self.run())
        address = self.relay.settings.metrics_address
        if address is not None and self.registry is not None:
            self._apart = serve_apart(address, self.registry)

    async def stop(self) -> None:
        """Stop refreshing, and the listener."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._apart is not None:
            self._apart.shutdown()
            self._apart.server_close()
            self._apart = None

    # -- the scrape -----------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        self.refresh()
        registry = self.registry
        if registry is None:  # several workers: every one's files, summed
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST


def count_published(conn: HTTPConnection, answer: Mapping[str, Any], *, replayed: bool) -> None:
    """A publish route's messages, when this relay measures (a replayed answer sent nothing)."""
    metrics: Metrics | None = getattr(conn.app.state, "metrics", None)
    if metrics is not None and not replayed:
        metrics.published(taken(answer))
        lost = missed(answer)
        if lost:
            metrics.missed(lost)


def taken(answer: Mapping[str, Any]) -> dict[str, int]:
    """How many messages each provider took, from a publish's answer (core.publishing)."""
    providers = answer.get("providers")
    if isinstance(providers, dict):
        return {str(name): int(t.get("accepted", 0)) for name, t in providers.items()}
    return {str(answer.get("provider")): int(answer.get("accepted", 0))}


def missed(answer: Mapping[str, Any]) -> dict[str, int]:
    """How many messages of a mirrored publish each provider did not take (the others did)."""
    providers = answer.get("providers")
    if not isinstance(providers, dict):
        return {}
    count = int(answer.get("accepted", 0))
    return {
        str(name): count - int(t.get("accepted", 0))
        for name, t in providers.items()
        if t.get("failed") is not None
    }


def _observer(ok: Any, failed: Any) -> Callable[[float, bool], None]:
    """A breaker's observer feeding one provider's call histograms."""

    def observe(seconds: float, succeeded: bool) -> None:
        (ok if succeeded else failed).observe(seconds)

    return observe


def serve_apart(address: tuple[str, int], registry: Any = None) -> Any:
    """prometheus-client's own listener on RELAY_METRICS_LISTEN, answering any path with the
    registry's text (None: every worker's multiprocess files, summed); a thread of this process.
    Returns its server (`shutdown()` stops it)."""
    from prometheus_client import CollectorRegistry, start_http_server

    if registry is None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    host, port = address
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server


def install(app: FastAPI, relay: Relay) -> Metrics:
    """Measure this app: Front's answers, the breaker's calls, and `GET /metrics` (on the
    relay's own port unless RELAY_METRICS_LISTEN gives the metrics a listener of their own)."""
    metrics = Metrics(relay)
    app.state.metrics = metrics
    if relay.settings.metrics_listen is not None:
        return metrics

    @app.get("/metrics", include_in_schema=False)
    async def scrape(request: Request) -> Response:
        principal = await relay_of(request).identify(request)
        if not principal.is_backend:
            raise Forbidden("the metrics are the backend's: send a relay API key")
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return metrics
