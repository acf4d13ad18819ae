"""History and recovery end to end on local with Redis (issue 16): `relay serve` with
RELAY_STORE=redis, stopped and started again on the same Redis. `?since=<id>` continues across
the restart (same epoch, numbers continue), an SSE stream's `Last-Event-ID` resumes from the
store on the new process, an id older than the kept history is 410 history-gap, and an encrypted
channel whose rule grants history leaves nothing in Redis (the security fix of core/history.py).

The relays use Redis database 9 of the test Redis (RELAY_TEST_REDIS_URL), emptied before and
after each test.
"""

from __future__ import annotations

import base64
import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from redis import Redis

from tests.e2e.conftest import API_KEY, RELAY_ENV
from tests.e2e.harness import RelayProcess
from tests.integration.conftest import REDIS_URL as TEST_REDIS_URL
from tests.integration.conftest import redis_unreachable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    Start = Callable[[], RelayProcess]

pytestmark = pytest.mark.e2e

PROBLEM = "urn:realtime-relay:problem:"
REDIS_URL = urlsplit(TEST_REDIS_URL)._replace(path="/9").geturl()
KEEP = 5  # RELAY_HISTORY_MAX_MESSAGES
POLICY = """
[[rule]]
pattern = "private-encrypted-{name}"
subscribe = ["user"]
publish = ["backend"]
client_events = []
history = ["anyone"]
options = { history = { envelope = true } }

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
publish = ["backend"]
client_events = []
history = ["anyone"]
"""


@pytest.fixture
def redis_db() -> Iterator[Redis]:
    """Database 9 of the test Redis, empty, emptied again afterwards."""
    problem = redis_unreachable(REDIS_URL)
    if problem:
        pytest.fail(problem)
    client = Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def start(tmp_path: Path, redis_db: Redis) -> Iterator[Start]:
    """Starts `relay serve` on Redis database 9 (each call a new process); stops them all."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = {
        **RELAY_ENV,
        "RELAY_STORE": "redis",
        "RELAY_REDIS_URL": REDIS_URL,
        "RELAY_POLICY_FILE": str(policy),
        "RELAY_HISTORY_MAX_MESSAGES": str(KEEP),
        "RELAY_RATE_LIMITS": "false",
        "RELAY_ENCRYPTION_MASTER_KEY_BASE64": base64.b64encode(bytes(range(32))).decode(),
    }
    started: list[RelayProcess] = []

    def _start() -> RelayProcess:
        relay = RelayProcess(env, tmp_path / f"relay-{len(started)}.log")
        started.append(relay)
        return relay

    yield _start
    for relay in started:
        if relay.process.poll() is None:
            relay.stop()


def _publish(relay: RelayProcess, channel: str, *names: str) -> None:
    for name in names:
        response = httpx.post(
            relay.base + "/v1/events",
            json={"name": name, "channel": channel, "data": {"n": name}},
            headers={"X-API-Key": API_KEY},
            timeout=5,
        )
        assert response.status_code == 200, response.text


def _messages(relay: RelayProcess, channel: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{relay.base}/v1/channels/{channel}/messages", params=params, timeout=5)


def _ids(relay: RelayProcess, channel: str) -> list[str]:
    response = _messages(relay, channel)
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["messages"]]


def _split(history_id: str) -> tuple[str, int]:
    epoch, _, seq = history_id.partition(":")
    return epoch, int(seq)


class Stream:
    """An SSE client on httpx's streaming response: reads `text/event-stream` frames."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines = response.iter_lines()

    def frame(self) -> dict[str, Any]:
        """The next frame with data: its `id` (or None) and its decoded `data`."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if "data" in fields:
                    return {"id": fields.get("id"), "data": json.loads(fields["data"])}
                fields = {}  # a heartbeat comment or a bare retry:
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    def events(self, count: int) -> list[dict[str, Any]]:
        """The next `count` application events (skipping nothing else: a gap frame fails)."""
        found = [self.frame() for _ in range(count)]
        assert all(f["data"]["type"] == "event" for f in found), found
        return found


@contextmanager
def _stream(relay: RelayProcess, channel: str, last_id: str | None = None) -> Iterator[Stream]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    timeout = httpx.Timeout(5, read=5)
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream(
            "GET", relay.base + "/v1/stream", params={"channel": channel}, headers=headers
        ) as response,
    ):
        stream = Stream(response)
        assert stream.frame()["data"]["type"] == "connected"
        yield stream


def test_since_continues_across_a_restart_in_the_same_epoch(start: Start) -> None:
    first = start()
    _publish(first, "news", "a", "b", "c")
    before = _ids(first, "news")
    first.stop()

    second = start()
    _publish(second, "news", "d", "e")
    body = _messages(second, "news", since=before[0]).json()
    assert [m["name"] for m in body["messages"]] == ["b", "c", "d", "e"]
    assert [m["data"] for m in body["messages"]] == [{"n": n} for n in "bcde"]
    ids = [_split(m["id"]) for m in body["messages"]]
    epoch = _split(before[0])[0]
    assert ids == [(epoch, 2), (epoch, 3), (epoch, 4), (epoch, 5)]
    assert body["next"] is None
    assert _messages(second, "news", since=body["messages"][-1]["id"]).json()["messages"] == []


def test_an_sse_stream_resumes_by_last_event_id_across_a_restart(start: Start) -> None:
    first = start()
    with _stream(first, "feed") as stream:
        _publish(first, "feed", "a", "b")
        got = stream.events(2)
    assert [f["data"]["event"] for f in got] == ["a", "b"]
    assert got == [dict(f, id=i) for f, i in zip(got, _ids(first, "feed"), strict=True)]
    first.stop()

    second = start()
    _publish(second, "feed", "c", "d")  # missed: nobody streams
    with _stream(second, "feed", last_id=got[-1]["id"]) as stream:
        missed = stream.events(2)
        _publish(second, "feed", "e")
        (live,) = stream.events(1)
    assert [f["data"]["event"] for f in [*missed, live]] == ["c", "d", "e"]
    assert [f["data"]["data"] for f in [*missed, live]] == [{"n": n} for n in "cde"]
    epoch = _split(got[0]["id"])[0]
    assert [_split(f["id"]) for f in [*missed, live]] == [(epoch, 3), (epoch, 4), (epoch, 5)]


def test_an_id_older_than_the_kept_history_is_410_history_gap(start: Start) -> None:
    relay = start()
    _publish(relay, "gap", *"abc")
    oldest = _ids(relay, "gap")[0]
    _publish(relay, "gap", *"defgh")  # KEEP = 5: a, b and c are trimmed
    kept = _ids(relay, "gap")
    assert len(kept) == KEEP
    response = _messages(relay, "gap", since=oldest)
    assert response.status_code == 410
    problem = response.json()
    assert problem["type"] == PROBLEM + "history-gap"
    assert problem["channel"] == "gap"
    assert problem["latest"] == kept[-1]
    # The oldest id still kept continues: the history holds its message.
    follows = _messages(relay, "gap", since=kept[0]).json()["messages"]
    assert [m["id"] for m in follows] == kept[1:]


def test_history_lost_under_a_restart_is_a_gap_on_since_and_on_sse(
    start: Start, redis_db: Redis
) -> None:
    first = start()
    _publish(first, "lost", "a")
    (old,) = _ids(first, "lost")
    first.stop()
    redis_db.flushdb()  # Redis lost its data while the relay was down

    second = start()
    _publish(second, "lost", "b")
    (new,) = _ids(second, "lost")
    assert _split(new)[0] != _split(old)[0]  # a new epoch
    response = _messages(second, "lost", since=old)
    assert response.status_code == 410
    assert response.json()["latest"] == new
    with _stream(second, "lost", last_id=old) as stream:
        assert stream.frame()["data"] == {"type": "gap", "channel": "lost"}


def test_an_encrypted_channel_granted_history_leaves_nothing_in_redis(
    start: Start, redis_db: Redis
) -> None:
    relay = start()
    _publish(relay, "private-encrypted-room", "secret")
    _publish(relay, "news", "plain")  # the same relay records a plain channel
    logs = [k.decode() for k in redis_db.scan_iter(match="*log:*")]
    assert any(k.endswith("log:news") for k in logs), logs
    assert not [k for k in redis_db.scan_iter() if b"encrypted" in k]
    assert not [k for k in redis_db.scan_iter() if b"secret" in (redis_db.dump(k) or b"")]
    response = _messages(relay, "private-encrypted-room")
    assert response.status_code == 501
    assert response.json()["type"] == PROBLEM + "encrypted-channel-history"
    since = _messages(relay, "private-encrypted-room", since="0badf00d:1")
    assert since.json()["type"] == PROBLEM + "encrypted-channel-history"
