"""GET /metrics: the Prometheus text format, read back with prometheus-client's own parser, and
counters that move with the traffic that should move them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from app.main import create_app
from app.metrics import auth_result, endpoint_of
from core.webhooks.delivery import Sender
from core.webhooks.memory import MemorySink
from core.webhooks.sink import install, uninstall
from tests.e2e.harness import free_port
from tests.servers import serve
from tests.unit.conftest import eventually
from tests.unit.core.webhooks.conftest import config, receiver, sign
from tests.unit.core.webhooks.test_memory import ev

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from core.settings import Settings
    from tests.unit.core.webhooks.receiver import Receiver

__all__ = ["receiver"]  # the webhook receiver fixture


@pytest.fixture
def measured(relay_settings: Settings) -> FastAPI:
    return create_app(relay_settings, metrics=True)


@pytest.fixture
async def client(measured: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=measured)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
        yield http


async def scrape(http: httpx.AsyncClient, api_key: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    answer = await http.get("/metrics", headers={"Authorization": f"Bearer {api_key}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_the_metrics_are_the_backends(client: httpx.AsyncClient, relay_token: Any) -> None:
    assert (await client.get("/metrics")).status_code == 403
    user = {"Authorization": f"Bearer {relay_token('ann')}"}
    assert (await client.get("/metrics", headers=user)).status_code == 403
    wrong = {"X-API-Key": "not-a-key-of-this-relay-0123"}
    assert (await client.get("/metrics", headers=wrong)).status_code == 401


async def test_publishes_auth_decisions_and_provider_calls_are_counted(
    client: httpx.AsyncClient, relay_api_key: str, relay_token: Any
) -> None:
    before = await scrape(client, relay_api_key)
    backend = {"X-API-Key": relay_api_key}
    body = {"name": "e", "channels": ["news", "scores"], "data": {"n": 1}}
    assert (await client.post("/v1/events", json=body, headers=backend)).status_code == 200
    form = {"socket_id": "1.2", "channel_name": "private-room"}
    assert (await client.post("/auth/channel", data=form)).status_code == 401
    user = {"Authorization": f"Bearer {relay_token('ann')}"}
    assert (await client.post("/auth/channel", data=form, headers=user)).status_code == 200
    after = await scrape(client, relay_api_key)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("relay_published_messages_total", provider="local") == 2
    assert moved("relay_http_requests_total", endpoint="/v1/events", status="200") == 1
    decisions = "relay_auth_decisions_total"
    assert moved(decisions, endpoint="/auth/channel", result="allowed", reason="none") == 1
    refused = {"endpoint": "/auth/channel", "result": "unauthenticated"}
    assert moved(decisions, **refused, reason="unauthenticated") == 1
    calls = "relay_provider_call_duration_seconds_count"
    assert moved(calls, provider="local", outcome="ok") == 1
    assert moved("relay_http_request_duration_seconds_count", endpoint="/v1/events") == 1
    assert ("relay_circuit_breaker_state", (("provider", "local"),)) in after
    assert value(after, "relay_circuit_breaker_state", provider="local") == 0


async def test_local_sockets_and_subscriptions_are_gauged(
    measured: FastAPI, relay_settings: Settings, relay_api_key: str
) -> None:
    async with serve(measured, lean=True) as server:
        url = f"{server.ws_url}/app/{relay_settings.app_key}?protocol=7"
        async with connect(url) as ws, httpx.AsyncClient(base_url=server.http_url) as http:
            await ws.recv()
            for channel in ("news", "scores"):
                frame = {"event": "pusher:subscribe", "data": {"channel": channel}}
                await ws.send(orjson.dumps(frame).decode())
                await ws.recv()
            samples = await scrape(http, relay_api_key)
    assert value(samples, "relay_connections", kind="websocket") == 1
    assert value(samples, "relay_subscriptions") == 2


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/channels/private-user-42/members", "/v1/channels/{channel}/members"),
        ("/apps/4242/channels/news", "/apps/{app_id}/channels/{name}"),
        ("/users/auth0%7C1/terminate_connections", "/apps/{app_id}/users/terminate"),
        ("/wp-login.php", "other"),
        ("/v1/channels/a/b/c", "other"),
    ],
)
def test_endpoint_labels_are_route_shapes_never_raw_paths(path: str, shape: str) -> None:
    assert endpoint_of(path) == shape


@pytest.mark.parametrize(
    ("status", "result"),
    [
        (200, "allowed"),
        (401, "unauthenticated"),
        (403, "forbidden"),
        (429, "rate_limited"),
        (400, "invalid"),
        (503, "error"),
    ],
)
def test_auth_answers_map_to_decisions(status: int, result: str) -> None:
    assert auth_result(status) == result


def test_without_metrics_nothing_is_served_or_imported(relay_app: FastAPI) -> None:
    assert relay_app.state.metrics is None
    assert all(getattr(route, "path", "") != "/metrics" for route in relay_app.routes)


@pytest.mark.parametrize("bad", ["9464", "host:", "host:port", "127.0.0.1:70000", ":9464"])
def test_the_metrics_listener_needs_a_host_and_a_port(relay_settings: Settings, bad: str) -> None:
    from core.errors import ConfigurationError
    from core.settings import Settings as Config

    with pytest.raises((ValueError, ConfigurationError)):
        Config(**{**relay_settings.model_dump(), "metrics_listen": bad})


async def test_a_listener_of_their_own_serves_the_metrics_without_a_key(
    relay_settings: Settings, relay_api_key: str
) -> None:
    from tests.e2e.harness import free_port

    port = free_port()
    settings = relay_settings.model_copy(update={"metrics_listen": f"[::1]:{port}"})
    assert settings.metrics_address == ("::1", port)
    settings = relay_settings.model_copy(update={"metrics_listen": f"127.0.0.1:{port}"})
    app = create_app(settings, metrics=True)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://relay") as http,
    ):
        backend = {"X-API-Key": relay_api_key}
        assert (await http.get("/metrics", headers=backend)).status_code == 404
        published = await http.post(
            "/v1/events", json={"name": "e", "channel": "c", "data": 1}, headers=backend
        )
        assert published.status_code == 200
        async with httpx.AsyncClient() as outside:
            answer = await outside.get(f"http://127.0.0.1:{port}/metrics")
        assert answer.status_code == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(answer.text)
            for s in f.samples
        }
        assert value(samples, "relay_published_messages_total", provider="local") == 1
    async with httpx.AsyncClient() as outside:
        with pytest.raises(httpx.ConnectError):  # stopped with the app
            await outside.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


async def test_auth_refusals_are_counted_by_their_problem_type(
    client: httpx.AsyncClient, relay_api_key: str, relay_token: Any
) -> None:
    before = await scrape(client, relay_api_key)
    user = {"Authorization": f"Bearer {relay_token('ann')}"}
    others = {"socket_id": "1.2", "channel_name": "private-user-bob"}
    assert (await client.post("/auth/channel", data=others, headers=user)).status_code == 403
    malformed = {"socket_id": "1.2", "channel_name": "private-bad channel"}
    assert (await client.post("/auth/channel", data=malformed, headers=user)).status_code == 400
    # A FastAPI route (not one Front serves directly): the local provider issues no tokens.
    assert (await client.get("/auth/token", headers=user)).status_code == 501
    after = await scrape(client, relay_api_key)

    def moved(endpoint: str, result: str, reason: str) -> float:
        labels = {"endpoint": endpoint, "result": result, "reason": reason}
        name = "relay_auth_decisions_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("/auth/channel", "forbidden", "forbidden") == 1
    assert moved("/auth/channel", "invalid", "invalid-channel") == 1
    assert moved("/auth/token", "error", "not-supported") == 1


async def test_the_webhook_queue_and_its_outcomes_are_measured(
    client: httpx.AsyncClient, relay_api_key: str, receiver: tuple[Receiver, str]
) -> None:
    backend, url = receiver
    held = config(url, hold_seconds=60.0)
    sink = MemorySink(held, Sender(held, sign))
    install(sink)
    try:
        sink.put([ev("channel_occupied"), ev("member_removed", user="ann")])  # the leave waits
        await sink.start()
        await backend.wait_for(1)
        await eventually(lambda: sink.delivered == 1)  # counted once the answer is read
        samples = await scrape(client, relay_api_key)
        assert value(samples, "relay_webhook_queue_events") == 1
        assert value(samples, "relay_webhook_events_total", outcome="delivered") == 1
        assert value(samples, "relay_webhook_events_total", outcome="failed") == 0
    finally:
        uninstall(sink)
        await sink.stop(drain=0.0)
    nowhere = config(f"http://127.0.0.1:{free_port()}/hooks", attempts=1, queue_events=1)
    failing = MemorySink(nowhere, Sender(nowhere, sign))
    install(failing)
    try:
        failing.put([ev("channel_occupied"), ev("channel_vacated")])  # one room: one dropped
        await failing.start()
        await eventually(lambda: failing.undelivered == 1)
        samples = await scrape(client, relay_api_key)
        assert value(samples, "relay_webhook_events_total", outcome="failed") == 1
        assert value(samples, "relay_webhook_events_total", outcome="dropped") == 1
        assert value(samples, "relay_webhook_events_total", outcome="delivered") == 1  # kept
    finally:
        uninstall(failing)
        await failing.stop(drain=0.0)
