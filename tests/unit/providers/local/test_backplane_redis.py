"""Two processes' backplanes on the real Redis (127.0.0.1:6379, RELAY_TEST_REDIS_URL), each with
its own hub, as two `relay serve` hosts would have: deliveries once and in order everywhere,
presence, online users, counts, cache, throttle, terminate, a dead host swept, and an outage of a
private Redis survived. Keys live under a prefix of each test's own, deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from typing import TYPE_CHECKING

import orjson
import pytest
from redis import Redis as SyncRedis

from core.errors import ProviderUnavailable
from core.provider import Member, PresenceData
from providers.local.backplane_redis import RedisBackplane, clients, decode, encode
from providers.local.hub import Delivery, Hub
from providers.pusherproto.outcome import MEMBER_ADDED, MEMBER_REMOVED, WATCHLIST_EVENTS
from providers.pusherproto.outcome import member_added as added_broadcast
from providers.pusherproto.state import SessionState
from tests.e2e.harness import free_port
from tests.integration.conftest import REDIS_URL, redis_unreachable
from tests.unit.conftest import Recorder, eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from providers.local.backplane_port import BackplanePort

    Starter = Callable[[str], Awaitable["Host"]]

ALICE = PresenceData("alice", {"name": "Alice"})
BOB = PresenceData("bob", {})


class Host:
    """One process: a hub, its backplane, and the users it was told to close."""

    def __init__(self, url: str, prefix: str, name: str, *, beat: float = 0.1) -> None:
        self.hub = Hub()
        self.closed: list[str] = []
        redis, listener = clients(url)
        self.backplane = RedisBackplane(
            self.hub,
            redis,
            listener,
            prefix=prefix,
            close_user=self.closed.append,
            host=name,
            beat_seconds=beat,
            ttl_seconds=beat * 5,
        )
        self._sockets = 0

    def socket(self) -> tuple[Recorder, BackplanePort]:
        """A new subscriber here, and its session port."""
        self._sockets += 1
        recorder = Recorder(f"{self.backplane.host}.{self._sockets}")
        return recorder, self.backplane.port(recorder, SessionState(recorder.socket_id))


@pytest.fixture
def prefix() -> Iterator[str]:
    problem = redis_unreachable(REDIS_URL)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    name = f"test:bp:{uuid.uuid4().hex}:"
    yield name
    client = SyncRedis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def hosts(prefix: str) -> AsyncIterator[Starter]:
    """Start hosts on the shared Redis: `hosts("a")`; each is closed afterwards."""
    started: list[Host] = []

    async def start(name: str) -> Host:
        host = Host(REDIS_URL, prefix, name)
        await host.backplane.start()
        assert host.backplane.up
        started.append(host)
        return host

    yield start
    for host in started:
        await host.backplane.aclose()


async def test_the_envelope_carries_a_delivery_whole() -> None:
    watch = Delivery.of(added_broadcast("presence-x", ALICE), sender="1.1")
    back = decode(encode(watch))
    assert (back.event, back.channel, back.data, back.json) == (
        watch.event,
        watch.channel,
        watch.data,
        True,
    )
    assert back.exclude == "1.1"
    plain = decode(encode(Delivery("e", "news", "x", user_id="u")))
    assert plain.user_id == "u"
    assert not plain.channelless


async def test_a_delivery_reaches_every_host_once_in_one_order(hosts: Starter) -> None:
    a, b = await hosts("a"), await hosts("b")
    on_a, port_a = a.socket()
    on_b, port_b = b.socket()
    await port_a.join("news", None)
    await port_b.join("news", None)
    for i in range(50):  # both hosts at once: Redis decides one order, the same for everyone
        (a if i % 2 else b).backplane.send(Delivery("n", "news", str(i)))
    await eventually(lambda: len(on_a.events) == len(on_b.events) == 50)
    assert on_a.events == on_b.events
    seen = [int(data) for _, _, data in on_a.events]
    assert sorted(seen) == list(range(50))
    assert [i for i in seen if i % 2] == list(range(1, 50, 2))  # each host's own in its order
    assert [i for i in seen if not i % 2] == list(range(0, 50, 2))
    for i in range(50, 60):  # one after the other, through either host: in that order
        await (a if i % 2 else b).backplane.publish([Delivery("n", "news", str(i))])
    want = [("news", "n", str(i)) for i in range(50, 60)]
    await eventually(lambda: len(on_a.events) == len(on_b.events) == 60)
    await asyncio.sleep(0.1)  # nothing more comes
    assert on_a.events[50:] == on_b.events[50:] == want
    assert on_a.events == on_b.events


async def test_the_sender_is_excluded_on_every_host(hosts: Starter) -> None:
    a, b = await hosts("a"), await hosts("b")
    sender, port_a = a.socket()
    other, port_b = b.socket()
    await port_a.join("private-room", None)
    await port_b.join("private-room", None)
    a.backplane.send(Delivery("client-typing", "private-room", "{}", exclude=sender.socket_id))
    await eventually(lambda: other.events == [("private-room", "client-typing", "{}")])
    assert sender.events == []


async def test_a_host_listens_only_while_it_has_subscribers(hosts: Starter) -> None:
    a, b = await hosts("a"), await hosts("b")
    _, port_a = a.socket()
    await port_a.join("news", None)
    await port_a.leave("news")
    await asyncio.sleep(0.1)
    channels = await b.backplane.redis.pubsub_channels(f"{a.backplane.prefix}c:*")
    assert channels == []
    await port_a.join("news", None)
    channels = await b.backplane.redis.pubsub_channels(f"{a.backplane.prefix}c:*")
    assert channels == [f"{a.backplane.prefix}c:news".encode()]


async def test_presence_first_and_last_across_hosts(hosts: Starter) -> None:
    a, b = await hosts("a"), await hosts("b")
    _, tab_a = a.socket()
    _, tab_b = b.socket()
    _, bob = b.socket()
    first = await tab_a.join("presence-room", ALICE)
    assert first.first
    assert first.roster == [Member("alice", {"name": "Alice"})]
    second = await tab_b.join("presence-room", ALICE)
    assert not second.first
    joined = await bob.join("presence-room", BOB)
    assert joined.first
    assert sorted(m.user_id for m in joined.roster or []) == ["alice", "bob"]
    assert joined.count == 3
    assert sorted(m.user_id for m in await a.backplane.members("presence-room")) == [
        "alice",
        "bob",
    ]
    assert (await tab_a.leave("presence-room")).user_id is None
    last = await tab_b.leave("presence-room")
    assert last.user_id == "alice"
    assert last.count == 1
    assert await a.backplane.members("presence-room") == [Member("bob", {})]


async def test_counts_and_channels_are_the_clusters(hosts: Starter) -> None:
    a, b = await hosts("a"), await hosts("b")
    for host in (a, b, b):
        _, port = host.socket()
        await port.join("news", None)
    _, member = a.socket()
    await member.join("presence-room", ALICE)
    assert await a.backplane.counts("news") == (3, 0)
    assert await b.backplane.counts("presence-room") == (1, 1)
    assert await b.backplane.channel_names() == ["news", "presence-room"]
    assert await b.backplane.channel_names("pres") == ["presence-room"]


async def test_online_users_across_hosts(hosts: Starter) -> None:
    a, b = await hosts("a"), await hosts("b")
    _, tab_a = a.socket()
    _, tab_b = b.socket()
    assert await tab_a.sign_in("alice")
    assert not await tab_b.sign_in("alice")
    _, watcher = b.socket()
    assert await watcher.online(["alice", "bob"]) == ["alice"]
    assert not await tab_a.sign_out("alice")
    assert await tab_b.sign_out("alice")
    assert await watcher.online(["alice"]) == []


async def test_a_cache_channel_keeps_the_last_publish_for_every_host(hosts: Starter) -> None:
    a, b = await hosts("a"), await hosts("b")
    await a.backplane.publish([Delivery("price", "cache-ticker", "1")])
    await a.backplane.publish([Delivery("price", "cache-ticker", "2")])
    _, port = b.socket()
    kept = await port.cached("cache-ticker")
    assert kept is not None
    assert (kept.event, kept.data) == ("price", "2")
    assert await port.cached("cache-other") is None
    # Client events never replace it.
    a.backplane.send(Delivery("client-x", "cache-ticker", "3"))
    await asyncio.sleep(0.05)
    assert (await b.backplane.cached("cache-ticker")) == kept


async def test_the_count_throttle_is_one_turn_across_hosts(hosts: Starter) -> None:
    a, b = await hosts("a"), await hosts("b")
    _, port_a = a.socket()
    _, port_b = b.socket()
    assert await port_a.throttle("news", now=0.0, span=5.0)
    assert not await port_b.throttle("news", now=0.0, span=5.0)
    assert await port_b.throttle("sport", now=0.0, span=5.0)


async def test_terminate_reaches_every_host(hosts: Starter) -> None:
    a, b = await hosts("a"), await hosts("b")
    await a.backplane.terminate("alice")
    await eventually(lambda: a.closed == ["alice"] and b.closed == ["alice"])


async def test_a_dead_hosts_members_are_swept_and_announced(hosts: Starter, prefix: str) -> None:
    alive = await hosts("alive")
    watcher, port = alive.socket()
    await port.join("presence-room", BOB)
    await port.join("#watchers-alice", None)
    dead = Host(REDIS_URL, prefix, "dead")
    await dead.backplane.start()
    _, ghost = dead.socket()
    await ghost.join("presence-room", ALICE)
    await ghost.sign_in("alice")
    assert len(await alive.backplane.members("presence-room")) == 2
    for task in dead.backplane._tasks:  # killed: no heartbeat, no goodbye
        task.cancel()
    await eventually(lambda: len(watcher.events) == 2, within=3.0)
    removed = [d for d in watcher.deliveries if d.event == MEMBER_REMOVED]
    assert orjson.loads(removed[0].data) == {"user_id": "alice"}
    offline = [d for d in watcher.deliveries if d.event == WATCHLIST_EVENTS]
    assert orjson.loads(offline[0].data)["events"] == [{"name": "offline", "user_ids": ["alice"]}]
    assert await alive.backplane.members("presence-room") == [Member("bob", {})]
    assert await alive.backplane.counts("presence-room") == (1, 1)
    for client in (dead.backplane.redis, dead.backplane.listener):
        await client.aclose()


async def test_a_host_swept_while_alive_registers_again(hosts: Starter) -> None:
    a, b = await hosts("a"), await hosts("b")
    watcher, port_b = b.socket()
    await port_b.join("presence-room", BOB)
    _, port_a = a.socket()
    await port_a.join("presence-room", ALICE)
    # As if a's heartbeat had lapsed (a stalled loop) and b swept it.
    await a.backplane.redis.delete(f"{a.backplane.prefix}hb:a")
    gone = await b.backplane.shared.sweep("a")
    assert gone is not None
    assert gone.members == [("presence-room", "alice")]
    # a's next heartbeat finds it was swept and registers its sockets again, announcing them.
    await eventually(lambda: any(d.event == MEMBER_ADDED for d in watcher.deliveries), within=3.0)
    assert sorted(m.user_id for m in await b.backplane.members("presence-room")) == [
        "alice",
        "bob",
    ]


@pytest.fixture
def private_redis() -> Iterator[Callable[[bool], str]]:
    """A redis-server of this test's own (start, kill, start again on the same port)."""
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed"
    port = free_port()
    running: list[subprocess.Popen[bytes]] = []

    def control(up: bool) -> str:
        if up:
            args = [server, "--port", str(port), "--save", "", "--appendonly", "no"]
            running.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):
                if redis_unreachable(url) is None:
                    break
                subprocess.run(["sleep", "0.05"], check=True)
        else:
            process = running.pop()
            process.kill()
            process.wait()
        return f"redis://127.0.0.1:{port}/0"

    yield control
    for process in running:
        process.kill()
        process.wait()


async def test_an_outage_keeps_local_delivery_refuses_publishes_and_recovers(
    private_redis: Callable[[bool], str],
) -> None:
    url = private_redis(True)
    a, b = Host(url, "o:", "a"), Host(url, "o:", "b")
    await a.backplane.start()
    await b.backplane.start()
    try:
        on_a, port_a = a.socket()
        on_b, port_b = b.socket()
        await port_a.join("presence-room", ALICE)
        await port_b.join("presence-room", BOB)
        private_redis(False)
        await eventually(lambda: not a.backplane.up and not b.backplane.up)
        with pytest.raises(ProviderUnavailable):
            await a.backplane.publish([Delivery("e", "presence-room", "x")])
        with pytest.raises(ProviderUnavailable):
            await a.backplane.members("presence-room")
        # A session's broadcast still reaches this host's own subscribers.
        late, port_late = a.socket()
        joined = await port_late.join("presence-room", PresenceData("carol", {}))
        assert joined.first
        assert sorted(m.user_id for m in joined.roster or []) == ["alice", "carol"]
        a.backplane.send(Delivery("client-x", "presence-room", "{}", exclude=late.socket_id))
        assert on_a.events[-1] == ("presence-room", "client-x", "{}")
        # Redis comes back empty: each host registers its sockets again and listens again.
        private_redis(True)
        await eventually(lambda: a.backplane.up and b.backplane.up, within=5.0)
        for _ in range(100):  # each host's registration follows its reconnection
            members = sorted(m.user_id for m in await b.backplane.members("presence-room"))
            if len(members) == 3:
                break
            await asyncio.sleep(0.02)
        assert members == ["alice", "bob", "carol"]
        await b.backplane.publish([Delivery("e", "presence-room", "after")])
        await eventually(lambda: ("presence-room", "e", "after") in on_a.events)
        await eventually(lambda: ("presence-room", "e", "after") in on_b.events)
        assert on_a.events.count(("presence-room", "e", "after")) == 1
    finally:
        for host in (a, b):
            with contextlib.suppress(Exception):
                await host.backplane.aclose()
