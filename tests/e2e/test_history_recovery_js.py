"""examples/recovery.js with pusher-js in Node against `relay serve` (issue 16, docs/recovery.md):
a channel whose rule asks for the envelope, wrapped by the helper; the client's socket is
disconnected, events are published meanwhile, the socket connects again, and events keep coming
while the helper's history fetch is held open. Every missed event is applied exactly once, in
order, then the live ones; a miss longer than the kept history calls onGap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.conftest import API_KEY, APP_KEY, RELAY_ENV
from tests.e2e.harness import ROOT, PusherAgent, RelayProcess

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.e2e

SCRIPT = ROOT / "tests" / "e2e" / "js" / "recovery.mjs"
KEEP = 10  # RELAY_HISTORY_MAX_MESSAGES
POLICY = """
[[rule]]
pattern = "news-{topic}"
subscribe = ["anyone"]
publish = ["backend"]
client_events = []
history = ["anyone"]
options = { history = { envelope = true } }
"""


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """`relay serve` (local, memory store) whose policy file enveloped `news-{topic}`."""
    folder = tmp_path_factory.mktemp("recovery")
    policy = folder / "policy.toml"
    policy.write_text(POLICY)
    env = {
        **RELAY_ENV,
        "RELAY_POLICY_FILE": str(policy),
        "RELAY_HISTORY_MAX_MESSAGES": str(KEEP),
        "RELAY_RATE_LIMITS": "false",
    }
    process = RelayProcess(env, folder / "relay.log")
    yield process
    process.stop()


@pytest.fixture
def node(relay: RelayProcess) -> Iterator[PusherAgent]:
    """pusher-js clients wrapped by examples/recovery.js."""
    agent = PusherAgent(relay, APP_KEY, script=SCRIPT)
    try:
        yield agent
    finally:
        agent.close()


def publish_numbers(relay: RelayProcess, channel: str, numbers: range) -> None:
    """Publish `update` events {"n": n} through the relay, one request each."""
    for n in numbers:
        response = httpx.post(
            relay.base + "/v1/events",
            json={"name": "update", "channel": channel, "data": {"n": n}},
            headers={"X-API-Key": API_KEY},
            timeout=5,
        )
        assert response.status_code == 200, response.text


def _observed(node: PusherAgent, kind: str, count: int) -> list[dict[str, Any]]:
    return [node.expect(lambda o: o["type"] == kind) for _ in range(count)]


def subscribe_recoverable(
    node: PusherAgent, relay: RelayProcess, channel: str, *, ws_port: int | None = None
) -> None:
    """Connect client "c" (to `ws_port`, default the relay) and wrap `channel` by the helper."""
    node.connect("c", ws_port=ws_port)
    node.send(
        op="subscribe",
        client="c",
        channel=channel,
        historyUrl=f"{relay.base}/v1/channels/{channel}/messages",
        bind=["update"],
    )
    node.expect(lambda o: o["type"] == "subscribed")


def _raw(data: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda o: o["type"] == "raw" and o["data"]["data"] == data


def _drop(node: PusherAgent) -> None:
    node.send(op="drop", client="c")
    node.expect(lambda o: o["type"] == "state" and o["state"] == "disconnected")


def test_missed_events_are_applied_once_in_order_then_live_ones(
    relay: RelayProcess, node: PusherAgent
) -> None:
    check_recovery(relay, node, "news-recovery")


def check_recovery(
    relay: RelayProcess, node: PusherAgent, channel: str, *, ws_port: int | None = None
) -> None:
    """Drop the socket, publish, reconnect with the fetch held while more arrive live: each
    event applied once, in order, with the history's ids (the channel must be new)."""
    subscribe_recoverable(node, relay, channel, ws_port=ws_port)
    publish_numbers(relay, channel, range(1, 4))
    before = _observed(node, "applied", 3)
    _drop(node)
    publish_numbers(relay, channel, range(4, 9))  # missed: the socket is down

    node.send(op="hold")  # the helper's fetch waits until release
    node.send(op="reconnect", client="c")
    fetching = node.expect(lambda o: o["type"] == "fetching")
    assert f"since={before[-1]['id'].replace(':', '%3A')}" in fetching["url"]
    publish_numbers(
        relay, channel, range(9, 11)
    )  # live during the recovery: held back, then deduped
    for n in (9, 10):  # delivered by pusher-js (enveloped) before the history answers
        node.expect(_raw({"n": n}))
    node.send(op="release")
    during = _observed(node, "applied", 7)
    publish_numbers(relay, channel, range(11, 13))
    after = _observed(node, "applied", 2)
    node.never(lambda o: o["type"] == "applied", wait=0.5)  # nothing applied twice

    applied = [*before, *during, *after]
    assert [o["data"] for o in applied] == [{"n": n} for n in range(1, 13)]  # unwrapped, in order
    epoch = applied[0]["id"].partition(":")[0]
    assert [o["id"] for o in applied] == [f"{epoch}:{n}" for n in range(1, 13)]  # the history's
    history = httpx.get(f"{relay.base}/v1/channels/{channel}/messages", timeout=5).json()
    assert [o["id"] for o in applied][-KEEP:] == [m["id"] for m in history["messages"]]


def test_a_miss_longer_than_the_kept_history_calls_on_gap(
    relay: RelayProcess, node: PusherAgent
) -> None:
    channel = "news-gap"
    subscribe_recoverable(node, relay, channel)
    publish_numbers(relay, channel, range(1, 2))
    (seen,) = _observed(node, "applied", 1)
    _drop(node)
    publish_numbers(
        relay, channel, range(2, 2 + KEEP + 1)
    )  # pushes the last seen id out of the history
    node.send(op="reconnect", client="c")
    gap = node.expect(lambda o: o["type"] == "gap")
    assert gap["problem"]["type"] == "urn:realtime-relay:problem:history-gap"
    assert gap["problem"]["latest"] != seen["id"]
    node.never(lambda o: o["type"] == "applied", wait=0.5)  # the app reloads; nothing half-applied


@pytest.mark.parametrize("published_before", [0, 2])
def test_events_missed_before_any_was_seen_are_recovered(
    relay: RelayProcess, node: PusherAgent, published_before: int
) -> None:
    channel = f"news-unseen-{published_before}"
    publish_numbers(relay, channel, range(1, 1 + published_before))  # before the subscription
    subscribe_recoverable(node, relay, channel)
    _drop(node)  # before any event reached the client
    missed = range(1 + published_before, 4 + published_before)
    publish_numbers(relay, channel, missed)
    node.send(op="reconnect", client="c")
    applied = _observed(node, "applied", 3)
    assert [o["data"] for o in applied] == [{"n": n} for n in missed]  # not those from before
    node.never(lambda o: o["type"] == "applied", wait=0.5)
