"""`relay serve --workers 2`: two processes on one port, joined by the Redis backplane.

Connections land on either worker (the kernel hands each to whichever accepts); a publish
through the port reaches every subscriber once whichever worker holds it; a worker killed with
SIGKILL is replaced and its sockets reconnect to the port; SIGTERM stops them all. Without a
shared backplane and store, several workers are refused at start-up, naming what to set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import API_KEY, APP_KEY, RELAY_ENV
from tests.e2e.harness import RelayProcess, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e

REDIS_DB = "redis://127.0.0.1:6379/11"
BACKEND = {"Authorization": f"Bearer {API_KEY}"}
SHARED = {
    "RELAY_BACKPLANE": "redis",
    "RELAY_REDIS_URL": REDIS_DB,
    "RELAY_STORE": "redis",
    "RELAY_DRAIN_SECONDS": "2",
}


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = RelayProcess(
        {**RELAY_ENV, **SHARED},
        tmp_path_factory.mktemp("workers") / "relay.log",
        args=("--workers", "2"),
    )
    yield process
    process.stop()


def workers_of(relay: RelayProcess) -> list[int]:
    """The worker processes' pids: the relay's children that multiprocessing spawned (not its
    resource tracker)."""
    found = Path(f"/proc/{relay.process.pid}/task/{relay.process.pid}/children").read_text()
    pids = []
    for pid in found.split():
        with contextlib.suppress(FileNotFoundError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
    return pids


async def subscribed(relay: RelayProcess, channel: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{relay.port}/app/{APP_KEY}?protocol=7", open_timeout=5)
    await ws.recv()
    frame = {"event": "pusher:subscribe", "data": {"channel": channel}}
    await ws.send(orjson.dumps(frame).decode())
    answer = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    assert answer["event"] == "pusher_internal:subscription_succeeded", answer
    return ws


def publish(relay: RelayProcess, channel: str, n: int) -> None:
    body = {"name": "tick", "channel": channel, "data": {"n": n}}
    answer = httpx.post(relay.base + "/v1/events", json=body, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 200, answer.text


async def ticks(ws: ClientConnection, count: int) -> list[int]:
    got = []
    for _ in range(count):
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        got.append(orjson.loads(frame["data"])["n"])
    return got


async def test_both_workers_serve_and_every_subscriber_gets_each_event_once(
    two_workers: RelayProcess,
) -> None:
    assert len(workers_of(two_workers)) == 2
    sockets = [await subscribed(two_workers, "ticker") for _ in range(12)]
    try:
        for n in range(20):
            await asyncio.to_thread(publish, two_workers, "ticker", n)
        for ws in sockets:
            assert await ticks(ws, 20) == list(range(20))
        with pytest.raises(TimeoutError):  # nothing twice
            await asyncio.wait_for(sockets[0].recv(), 0.5)
    finally:
        for ws in sockets:
            await ws.close()


async def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(
    two_workers: RelayProcess,
) -> None:
    before = workers_of(two_workers)
    os.kill(before[0], signal.SIGKILL)
    async with asyncio.timeout(15):
        while True:
            now = workers_of(two_workers)
            if len(now) == 2 and before[0] not in now:
                break
            await asyncio.sleep(0.1)
    ws = await subscribed(two_workers, "after")
    try:
        await asyncio.to_thread(publish, two_workers, "after", 7)
        assert await ticks(ws, 1) == [7]
    finally:
        await ws.close()


def test_metrics_from_any_worker_are_the_totals_of_both(two_workers: RelayProcess) -> None:
    def published() -> float:
        answer = httpx.get(
            two_workers.base + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert answer.status_code == 200, answer.text
        families = text_string_to_metric_families(answer.text)
        counted = [
            s.value
            for f in families
            for s in f.samples
            if s.name == "relay_published_messages_total"
        ]
        return sum(counted)

    before = published()
    for n in range(10):  # new connections: the kernel spreads them over the workers
        publish(two_workers, "counted", n)
    # Whichever worker answers each scrape, it reads every worker's counts.
    assert {published() - before for _ in range(6)} == {10}


def test_the_metrics_listener_of_the_parent_sums_every_worker(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """RELAY_METRICS_LISTEN: one listener, run by the parent, with no key; the relay's own
    port serves no /metrics."""
    port = free_port()
    relay = RelayProcess(
        {**RELAY_ENV, **SHARED, "RELAY_METRICS_LISTEN": f"127.0.0.1:{port}"},
        tmp_path_factory.mktemp("workers-listen") / "relay.log",
        args=("--workers", "2"),
    )
    try:
        assert httpx.get(relay.base + "/metrics", headers=BACKEND).status_code == 404
        for n in range(10):
            publish(relay, "counted-apart", n)
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert answer.status_code == 200, answer.text
        counted = [
            s.value
            for f in text_string_to_metric_families(answer.text)
            for s in f.samples
            if s.name == "relay_published_messages_total"
        ]
        assert sum(counted) == 10
    finally:
        relay.stop()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, ["RELAY_BACKPLANE", "RELAY_STORE"]),
        ({"RELAY_BACKPLANE": "redis", "RELAY_REDIS_URL": REDIS_DB}, ["RELAY_STORE"]),
    ],
)
def test_workers_without_shared_state_are_refused(env: dict[str, str], named: list[str]) -> None:
    relay = Path(sys.executable).with_name("relay")
    done = subprocess.run(
        [str(relay), "serve", "--workers", "2"],
        env={**os.environ, **RELAY_ENV, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    problems = [line for line in done.stderr.splitlines() if "configuration error" in line]
    assert [p.split(": ")[2] for p in problems] == named
