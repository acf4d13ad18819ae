"""Two `relay serve` hosts joined by the Redis backplane, pusher-js clients on each: presence across
hosts, publishes through either host reaching everyone once and in order, client events across
hosts, a SIGKILLed host's members removed, and a Redis restarted under the relays.

The hosts share the Redis of the tests (RELAY_TEST_REDIS_URL) under an app id of their own (the
backplane's keys are `relay:bp:<app id>:`), deleted afterwards; the restart uses a redis-server
of its own on a free port, never the system's.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from redis import Redis

from core.settings import Settings
from core.tokens import mint_dev_token
from tests.e2e.conftest import API_KEY, APP_KEY, JWT_SECRET, RELAY_ENV
from tests.e2e.harness import PusherAgent, RelayProcess, free_port
from tests.integration.conftest import REDIS_URL, redis_unreachable

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.e2e.harness import Observation

pytestmark = pytest.mark.e2e

SWEEP_WITHIN_SECONDS = 30


def token(user_id: str, name: str | None = None) -> str:
    """A JWT the relays accept."""
    settings = Settings(jwt_secret=JWT_SECRET, api_keys=API_KEY)
    return mint_dev_token(settings, user_id=user_id, name=name)


def publish(relay: RelayProcess, channel: str, name: str, data: Any) -> httpx.Response:
    """POST /v1/events with the backend key."""
    body = {"name": name, "channel": channel, "data": data}
    return httpx.post(
        relay.base + "/v1/events", json=body, headers={"X-API-Key": API_KEY}, timeout=5
    )


def backplane_env(app_id: str, redis_url: str) -> dict[str, str]:
    """A relay on the Redis backplane, quick to stop."""
    return {
        **RELAY_ENV,
        "RELAY_APP_ID": app_id,
        "RELAY_BACKPLANE": "redis",
        "RELAY_REDIS_URL": redis_url,
        "RELAY_DRAIN_SECONDS": "1",
    }


def start(env: dict[str, str], folder: Path, count: int) -> list[RelayProcess]:
    """`count` relays started side by side."""

    async def all_of() -> list[RelayProcess]:
        return await asyncio.gather(
            *(asyncio.to_thread(RelayProcess, env, folder / f"relay-{i}.log") for i in range(count))
        )

    return asyncio.run(all_of())


def connect(clients: PusherAgent, name: str, host: RelayProcess, user: str | None = None) -> str:
    """A pusher-js client on `host` (authorized by either: the auth answers are stateless)."""
    return clients.connect(name, token(user, user.title()) if user else None, ws_port=host.port)


def of(client: str, kind: str, **fields: Any) -> Any:
    """Matcher of one client's observation of one kind."""
    return lambda o: (
        o.get("client") == client
        and o["type"] == kind
        and all(o.get(k) == v for k, v in fields.items())
    )


@pytest.fixture(scope="module")
def app_id() -> Iterator[str]:
    """An app id of this module's own, and its backplane keys deleted afterwards."""
    problem = redis_unreachable(REDIS_URL)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    name = f"bp-{uuid.uuid4().hex[:12]}"
    yield name
    client = Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"relay:bp:{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def hosts(app_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RelayProcess]]:
    """Two relays on the shared Redis."""
    started = start(backplane_env(app_id, REDIS_URL), tmp_path_factory.mktemp("backplane"), 2)
    yield started
    for relay in started:
        relay.stop()


@pytest.fixture
def clients(hosts: list[RelayProcess]) -> Iterator[PusherAgent]:
    """pusher-js clients, each on the host its test names."""
    agent = PusherAgent(hosts[0], APP_KEY)
    yield agent
    agent.close()


def test_a_member_on_one_host_is_seen_joining_and_leaving_on_the_other(
    hosts: list[RelayProcess], clients: PusherAgent
) -> None:
    a, b = hosts
    channel = "presence-across"
    connect(clients, "ann", a, "ann")
    assert clients.subscribe("ann", channel)["members"] == ["ann"]
    connect(clients, "ben", b, "ben")
    assert clients.subscribe("ben", channel)["members"] == ["ann", "ben"]
    added = clients.expect(of("ann", "member_added", channel=channel))
    assert (added["id"], added["info"]) == ("ben", {"name": "Ben"})
    members = httpx.get(
        f"{a.base}/v1/channels/{channel}/members", headers={"X-API-Key": API_KEY}, timeout=5
    ).json()
    assert sorted(m["user_id"] for m in members["members"]) == ["ann", "ben"]
    # A second socket of Ben's, on the other host: no second member, and no removal on leaving.
    connect(clients, "ben2", a, "ben")
    assert clients.subscribe("ben2", channel)["members"] == ["ann", "ben"]
    clients.send(op="disconnect", client="ben2")
    clients.never(of("ann", "member_removed"), wait=0.5)
    clients.send(op="disconnect", client="ben")
    assert clients.expect(of("ann", "member_removed", channel=channel))["id"] == "ben"


def test_publishes_through_either_host_reach_everyone_once_in_order(
    hosts: list[RelayProcess], clients: PusherAgent
) -> None:
    channel = "ticks"
    for i, host in enumerate((*hosts, *hosts)):
        connect(clients, f"c{i}", host)
        assert clients.subscribe(f"c{i}", channel)["type"] == "subscribed"
    for n in range(200):
        response = publish(hosts[n % 2], channel, "tick", {"n": n})
        assert response.status_code == 200, response.text
    for i in range(4):
        seen = [
            clients.expect(of(f"c{i}", "event", channel=channel))["data"]["n"] for _ in range(200)
        ]
        assert seen == list(range(200))
    clients.never(of("c0", "event", channel=channel), wait=0.5)


def test_client_events_cross_hosts(hosts: list[RelayProcess], clients: PusherAgent) -> None:
    a, b = hosts
    channel = "presence-chat"
    connect(clients, "u1", a, "u1")
    connect(clients, "u2", b, "u2")
    for client in ("u1", "u2"):
        assert clients.subscribe(client, channel)["type"] == "subscribed"
    clients.send(op="bind", client="u2", channel=channel, event="client-typing")
    clients.send(op="trigger", client="u1", channel=channel, event="client-typing", data={"on": 1})
    typed: Observation = clients.expect(of("u2", "bound", event="client-typing"))
    assert (typed["data"], typed["user_id"]) == ({"on": 1}, "u1")
    clients.never(of("u1", "event", channel=channel), wait=0.5)


def test_a_killed_hosts_members_are_removed(
    app_id: str, hosts: list[RelayProcess], clients: PusherAgent, tmp_path: Path
) -> None:
    (doomed,) = start(backplane_env(app_id, REDIS_URL), tmp_path, 1)
    try:
        channel = "presence-doomed"
        connect(clients, "watcher", hosts[0], "watcher")
        assert clients.subscribe("watcher", channel)["type"] == "subscribed"
        connect(clients, "ghost", doomed, "ghost")
        assert clients.subscribe("ghost", channel)["members"] == ["ghost", "watcher"]
        clients.expect(of("watcher", "member_added", channel=channel))
        killed = time.monotonic()
        doomed.process.kill()
        removed = clients.expect(
            of("watcher", "member_removed", channel=channel), timeout=SWEEP_WITHIN_SECONDS
        )
        assert removed["id"] == "ghost"
        assert time.monotonic() - killed < SWEEP_WITHIN_SECONDS
        members = httpx.get(
            f"{hosts[1].base}/v1/channels/{channel}/members",
            headers={"X-API-Key": API_KEY},
            timeout=5,
        ).json()
        assert [m["user_id"] for m in members["members"]] == ["watcher"]
    finally:
        doomed.stop()


@pytest.fixture
def private_redis() -> Iterator[tuple[str, Any]]:
    """A redis-server of this test's own, and a switch: `switch(False)` kills it, `switch(True)`
    starts it again on the same port (empty: no persistence)."""
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed"
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    running: list[subprocess.Popen[bytes]] = []

    def switch(on: bool) -> None:
        if not on:
            process = running.pop()
            process.kill()
            process.wait()
            return
        args = [server, "--port", str(port), "--save", "", "--appendonly", "no"]
        running.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while redis_unreachable(url) is not None:
            assert time.monotonic() < deadline, "the private redis-server did not start"
            time.sleep(0.05)

    switch(True)
    yield url, switch
    for process in running:
        process.kill()
        process.wait()


def test_a_redis_restart_is_survived_without_restarting_the_relays(
    private_redis: tuple[str, Any], tmp_path: Path
) -> None:
    url, switch = private_redis
    # The publishing service's breaker opens on the 503s of the outage: a short cooldown lets
    # the test see the recovery without waiting out the default 10 s.
    env = {**backplane_env("bp-restart", url), "RELAY_BREAKER_COOLDOWN_SECONDS": "0.5"}
    a, b = start(env, tmp_path, 2)
    clients = PusherAgent(a, APP_KEY)
    try:
        channel = "presence-restart"
        connect(clients, "ann", a, "ann")
        connect(clients, "ben", b, "ben")
        for client in ("ann", "ben"):
            assert clients.subscribe(client, channel)["type"] == "subscribed"
        # Ben's arrival crosses Redis to Ann's host before the outage (a presence change during
        # one reaches its own host only: docs/scaling.md).
        assert clients.expect(of("ann", "member_added", channel=channel))["id"] == "ben"
        switch(False)
        # Publishes that must cross hosts are refused, never dropped in silence.
        refused = _until(lambda: publish(a, channel, "e", 0), lambda r: r.status_code == 503)
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["type"].endswith("provider-unavailable")
        # The sockets stay connected meanwhile.
        clients.never(of("ann", "state", state="disconnected"), wait=0.3)
        switch(True)
        # Recovered, no restart: listening again, and both members registered again. A process
        # takes publishes once it listens again; what is published before the other one does
        # misses the other's subscribers (pub/sub keeps nothing: docs/scaling.md), so both first.
        for relay in (a, b):
            _until(lambda r=relay: publish(r, channel, "ready", 0), lambda r: r.status_code == 200)
        assert publish(b, channel, "after", {"n": 1}).status_code == 200
        assert clients.expect(of("ann", "event", event="after"))["data"] == {"n": 1}
        assert clients.expect(of("ben", "event", event="after"))["data"] == {"n": 1}

        def members() -> list[str]:
            answer = httpx.get(
                f"{a.base}/v1/channels/{channel}/members", headers={"X-API-Key": API_KEY}, timeout=5
            ).json()
            return sorted(m["user_id"] for m in answer["members"])

        assert _until(members, lambda found: found == ["ann", "ben"]) == ["ann", "ben"]
        clients.send(op="disconnect", client="ben")
        assert clients.expect(of("ann", "member_removed", channel=channel))["id"] == "ben"
    finally:
        clients.close()
        for relay in (a, b):
            relay.stop()


def _until(call: Any, done: Any, within: float = 10.0) -> Any:
    """Call until `done(answer)`; the last answer (failing after `within` seconds)."""
    deadline = time.monotonic() + within
    while True:
        answer = call()
        if done(answer):
            return answer
        assert time.monotonic() < deadline, f"never done: {answer!r}"
        time.sleep(0.1)
