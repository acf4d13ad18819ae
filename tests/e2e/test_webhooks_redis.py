"""Webhooks with Redis: two `relay serve` hosts on the Redis backplane report each channel event
once for the cluster (its counts and rosters are Redis's), a user who drops on one host and comes
back on the other within the hold is no leave, and events queued while the backend is down survive
a SIGKILL of the relay on the Redis stream, delivered by the next relay."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import pytest
from redis import Redis

from tests.e2e.conftest import APP_KEY, APP_SECRET
from tests.e2e.harness import PusherAgent, RelayProcess
from tests.e2e.test_backplane import backplane_env, connect, start
from tests.e2e.test_webhooks import on, wait_on
from tests.integration.conftest import REDIS_URL, redis_unreachable
from tests.unit.core.webhooks.receiver import Receiver, ReceiverThread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.e2e

HOLD = 1.5


@pytest.fixture
def app_id() -> Iterator[str]:
    """An app id of the test's own; its backplane and webhook keys deleted afterwards."""
    problem = redis_unreachable(REDIS_URL)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    name = f"wh-{uuid.uuid4().hex[:12]}"
    yield name
    client = Redis.from_url(REDIS_URL)
    for pattern in (f"relay:bp:{name}:*", f"relay:webhooks:{name}:*"):
        keys = list(client.scan_iter(match=pattern))
        if keys:
            client.delete(*keys)
    client.close()


def env(app_id: str, url: str) -> dict[str, str]:
    return {
        **backplane_env(app_id, REDIS_URL),
        "RELAY_WEBHOOK_URL": url,
        "RELAY_WEBHOOK_HOLD_SECONDS": str(HOLD),
        "RELAY_WEBHOOK_ATTEMPTS": "2",
    }


def test_two_hosts_report_each_event_once(app_id: str, tmp_path: Path) -> None:
    receiver = Receiver(app_key=APP_KEY, app_secret=APP_SECRET)
    with ReceiverThread(receiver) as url:
        a, b = start(env(app_id, url), tmp_path, 2)
        clients = PusherAgent(a, APP_KEY)
        try:
            channel = "presence-cluster"
            connect(clients, "ann", a, "ann")
            clients.subscribe("ann", channel)
            connect(clients, "ben", b, "ben")
            clients.subscribe("ben", channel)
            assert wait_on(receiver, channel, 3) == [
                ("channel_occupied", None),
                ("member_added", "ann"),
                ("member_added", "ben"),
            ]
            # ann drops on host A and is back on host B at once: nothing to report
            clients.send(op="disconnect", client="ann")
            time.sleep(0.2)
            connect(clients, "ann-again", b, "ann")
            clients.subscribe("ann-again", channel)
            time.sleep(HOLD + 1.5)
            assert len(on(receiver, channel)) == 3
            clients.send(op="disconnect", client="ben")
            clients.send(op="disconnect", client="ann-again")
            found = wait_on(receiver, channel, 6)
            assert sorted(found[3:5]) == [("member_removed", "ann"), ("member_removed", "ben")]
            assert found[5] == ("channel_vacated", None)
            time.sleep(1.0)
            assert len(on(receiver, channel)) == 6  # once for the cluster, not once per host
        finally:
            clients.close()
            a.stop()
            b.stop()
    assert receiver.refused == []


def test_events_queued_on_the_stream_survive_a_killed_relay(app_id: str, tmp_path: Path) -> None:
    receiver = Receiver(app_key=APP_KEY, app_secret=APP_SECRET)
    receiver.failures = [503] * 1000  # the backend is down
    with ReceiverThread(receiver) as url:
        # still retrying when it is killed (not yet given up to the dead stream)
        patient = {**env(app_id, url), "RELAY_WEBHOOK_ATTEMPTS": "50"}
        relay = RelayProcess(patient, tmp_path / "first.log")
        clients = PusherAgent(relay, APP_KEY)
        try:
            clients.connect("p")
            clients.subscribe("p", "crash-news")
            deadline = time.monotonic() + 10
            while receiver.requests < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert receiver.requests >= 1  # tried, refused
            relay.process.kill()  # SIGKILL: no drain, nothing flushed
            relay.process.wait()
        finally:
            clients.close()
            relay.stop()
        stream = Redis.from_url(REDIS_URL)
        assert stream.xlen(f"relay:webhooks:{app_id}:stream") >= 1
        stream.close()
        receiver.failures = []  # the backend is back
        second = RelayProcess(env(app_id, url), tmp_path / "second.log")
        try:
            # the dead relay's lease expires (10 s), then the new one delivers from the cursor
            assert wait_on(receiver, "crash-news", 1, within=25) == [("channel_occupied", None)]
        finally:
            second.stop()
    assert receiver.refused == []
