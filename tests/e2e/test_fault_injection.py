"""Provider faults, end to end: `relay serve` (pusher provider) → fault proxy → soketi → pusher-js.

The proxy (tests/e2e/faultproxy.py) delays, resets and fails a seeded share of the relay's calls to
soketi, always before forwarding, so which publishes soketi received is never in doubt. A client
publishes with an Idempotency-Key and retries a non-2xx answer with the same key; then:

- every publish the relay answered 2xx reaches the pusher-js subscriber exactly once,
- every publish whose last answer was non-2xx never arrives, and said so (`accepted` false or
  null, a provider problem type),
- nothing else arrives.

The ambiguous case, where soketi took the request and the answer was lost, is its own test: the
relay answers 504 `provider-timeout` with `accepted: null` and does not send it again itself.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import API_KEY
from tests.e2e.faultproxy import FaultProxy
from tests.e2e.harness import PusherAgent, RelayProcess, agent
from tests.e2e.soketi import SoketiProcess, pusher_relay_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.e2e.harness import Observation

pytestmark = pytest.mark.e2e

PUSHER_APP_ID = "880088"
PUSHER_KEY = "fault-e2e-key"
PUSHER_SECRET = "fault-e2e-secret-0123456789abcdef"
PROBLEM = "application/problem+json"
PROVIDER_PROBLEMS = {
    "urn:realtime-relay:problem:provider-error",
    "urn:realtime-relay:problem:provider-unavailable",
    "urn:realtime-relay:problem:provider-timeout",
}
SEED = 20240607
PUBLISHES = 40
CLIENT_ATTEMPTS = 3
TIMEOUT_SECONDS = 1.0  # PUSHER_TIMEOUT_SECONDS: every injected delay stays well below it
SHARES = {"forward": 0.4, "delay": 0.15, "reset": 0.2, "fail": 0.25}


@dataclass(frozen=True, slots=True)
class Stack:
    """soketi, the proxy in front of it, and relays that publish through the proxy."""

    soketi: SoketiProcess
    proxy: FaultProxy
    relay: RelayProcess


def relay_env(proxy_port: int, **extra: str) -> dict[str, str]:
    """The relay on the pusher provider, pointed at the proxy."""
    env = pusher_relay_env(
        proxy_port,
        app_id=PUSHER_APP_ID,
        key=PUSHER_KEY,
        secret=PUSHER_SECRET,
        PUSHER_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
        RELAY_BREAKER_FAILURES="1000",  # the breaker has its own test below
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("faults")
    soketi = SoketiProcess(
        app_id=PUSHER_APP_ID,
        key=PUSHER_KEY,
        secret=PUSHER_SECRET,
        log_path=folder / "soketi.log",
    )
    try:
        with FaultProxy(soketi.port) as proxy:
            relay = RelayProcess(relay_env(proxy.port), folder / "relay.log")
            try:
                yield Stack(soketi, proxy, relay)
            finally:
                relay.stop()
    finally:
        soketi.stop()


@pytest.fixture
def listener(stack: Stack) -> Iterator[PusherAgent]:
    """pusher-js connected to soketi directly (only the relay's calls cross the proxy)."""
    with agent(stack.relay, PUSHER_KEY) as a:
        a.connect("sub", ws_port=stack.soketi.port)
        yield a


def subscribe(listener: PusherAgent, channel: str) -> None:
    assert listener.subscribe("sub", channel)["type"] == "subscribed"


def publish(client: httpx.Client, channel: str, n: int, key: str | None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    body = {"name": "n", "channel": channel, "data": {"n": n}}
    return client.post("/v1/events", json=body, headers=headers)


def received(listener: PusherAgent, channel: str, expected: int, *, settle: float) -> list[int]:
    """The `n` of every event on the channel: at least `expected` of them, then whatever else
    arrives within `settle` seconds."""
    got: list[int] = []

    def is_event(o: Observation) -> bool:
        return bool(o["type"] == "event" and o["channel"] == channel)

    while len(got) < expected:
        got.append(listener.expect(is_event, timeout=10)["data"]["n"])
    deadline = time.monotonic() + settle
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(listener.expect(is_event, timeout=left)["data"]["n"])
        except AssertionError:
            break
    return got


def forwarded_ns(proxy: FaultProxy, channel: str) -> list[int]:
    """The `n` of every event soketi was sent, from the bodies of the forwarded calls."""
    found: list[int] = []
    for call in proxy.forwarded():
        body = orjson.loads(call.body) if call.body else {}
        events = body.get("batch", [body]) if isinstance(body, dict) else []
        for event in events:
            if event.get("channel") == channel or channel in event.get("channels", []):
                found.append(orjson.loads(event["data"])["n"])
    return found


def assert_not_accepted(answer: httpx.Response) -> dict[str, Any]:
    """A refusal that says the provider did not (or may not have) take(n) the message."""
    assert answer.headers["content-type"] == PROBLEM, answer.text
    problem: dict[str, Any] = answer.json()
    assert problem["type"] in PROVIDER_PROBLEMS, problem
    assert problem["accepted"] in (False, None), problem
    assert "receipts" not in problem
    return problem


def test_every_accepted_publish_is_delivered_exactly_once(
    stack: Stack, listener: PusherAgent
) -> None:
    channel = "fault-feed"
    subscribe(listener, channel)
    stack.proxy.clear()
    stack.proxy.configure(seed=SEED, shares=SHARES, delay=TIMEOUT_SECONDS / 4)
    final: dict[int, int] = {}
    answers: Counter[int] = Counter()
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=stack.relay.base, headers=headers, timeout=10) as client:
        for n in range(PUBLISHES):
            for _ in range(CLIENT_ATTEMPTS):
                answer = publish(client, channel, n, key=f"fault-{SEED}-{n}")
                answers[answer.status_code] += 1
                if answer.is_success:
                    assert answer.json()["accepted"] == 1
                    break
                assert_not_accepted(answer)
            final[n] = answer.status_code
    faults = stack.proxy.counts()
    stack.proxy.configure(seed=SEED, shares={"forward": 1.0})
    accepted = sorted(n for n, status in final.items() if 200 <= status < 300)
    refused = sorted(set(final) - set(accepted))
    got = received(listener, channel, len(accepted), settle=1.0)
    print(f"faults {dict(faults)}; answers {dict(answers)}; accepted {len(accepted)}, "
          f"refused {len(refused)}")  # fmt: skip
    # The run injected every kind of fault, and some publishes failed for good.
    assert all(faults[action] > 0 for action in SHARES), faults
    assert refused, "no publish was answered non-2xx in the end: raise the fault shares"
    # Exactly the accepted set arrived, each once, in the order it was published.
    assert Counter(got) == Counter(accepted), (got, accepted)
    assert got == accepted
    # And soketi was sent each accepted message once, and no refused one.
    assert Counter(forwarded_ns(stack.proxy, channel)) == Counter(accepted)


@pytest.mark.parametrize(
    "action",
    [
        pytest.param("forward_then_hang", id="answer-never-comes"),
        pytest.param("forward_then_reset", id="connection-reset-after-forwarding"),
        pytest.param("forward_then_close", id="connection-closed-after-forwarding"),
    ],
)
def test_a_forwarded_publish_whose_answer_is_lost_is_504_and_never_sent_twice(
    stack: Stack, listener: PusherAgent, action: str
) -> None:
    channel = f"fault-lost-{action.replace('_', '-')}"
    subscribe(listener, channel)
    stack.proxy.configure(seed=SEED, shares={"forward": 1.0})
    stack.proxy.clear()
    stack.proxy.schedule(action)
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=stack.relay.base, headers=headers, timeout=10) as client:
        started = time.monotonic()
        answer = publish(client, channel, 1, key=f"lost-{action}")
        elapsed = time.monotonic() - started
    # soketi had it: it is delivered, once, whatever the relay answered.
    assert received(listener, channel, 1, settle=1.0) == [1], f"relay answered {answer.text}"
    assert forwarded_ns(stack.proxy, channel) == [1], stack.proxy.calls
    assert answer.status_code == 504, answer.text
    problem = assert_not_accepted(answer)
    assert problem["type"] == "urn:realtime-relay:problem:provider-timeout"
    assert problem["accepted"] is None
    assert elapsed < TIMEOUT_SECONDS * 3


def test_the_breaker_fails_fast_while_soketi_fails_and_probes_it_back(
    stack: Stack, listener: PusherAgent, tmp_path: Path
) -> None:
    channel = "fault-breaker"
    subscribe(listener, channel)
    env = relay_env(
        stack.proxy.port, RELAY_BREAKER_FAILURES="2", RELAY_BREAKER_COOLDOWN_SECONDS="1"
    )
    relay = RelayProcess(env, tmp_path / "breaker-relay.log")
    try:
        stack.proxy.configure(seed=SEED, shares={"fail": 1.0})
        headers = {"X-API-Key": API_KEY}
        with httpx.Client(base_url=relay.base, headers=headers, timeout=10) as client:
            for n in (1, 2):  # two failures in a row (each after the relay's own retries)
                assert_not_accepted(failed := publish(client, channel, n, key=None))
                assert failed.status_code == 502
            stack.proxy.clear()
            fast = publish(client, channel, 3, key=None)
            assert fast.status_code == 503, fast.text
            assert assert_not_accepted(fast)["accepted"] is False
            assert int(fast.headers["retry-after"]) >= 1
            assert stack.proxy.calls == []  # open: soketi was not even asked
            stack.proxy.configure(seed=SEED, shares={"forward": 1.0})
            time.sleep(1.1)  # the cooldown: the next call is the probe
            probe = publish(client, channel, 4, key=None)
            assert probe.status_code == 200, probe.text
            after = publish(client, channel, 5, key=None)
            assert after.status_code == 200, after.text
    finally:
        relay.stop()
    assert received(listener, channel, 2, settle=0.5) == [4, 5]
