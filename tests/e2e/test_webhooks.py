"""Outbound webhooks end to end: pusher-js clients against `relay serve` (local provider), the
relay's webhooks to a receiver in this process that verifies every request as a backend would:
with the official Python Pusher SDK's `validate_webhook`, or with `standardwebhooks`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from core.settings import Settings
from core.tokens import mint_dev_token
from tests.e2e.conftest import API_KEY, APP_ID, APP_KEY, APP_SECRET, JWT_SECRET, RELAY_ENV
from tests.e2e.harness import PusherAgent, RelayProcess
from tests.unit.core.webhooks.receiver import WEBHOOK_SECRET, Receiver, ReceiverThread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.e2e

HOLD = 2.0  # RELAY_WEBHOOK_HOLD_SECONDS here (3 by default)
POLICY = """
[[rule]]
pattern = "presence-chat-{room}"
subscribe = ["user"]
client_events = ["user"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
publish = ["backend"]
"""


def token(user_id: str) -> str:
    """A JWT the relay accepts."""
    return mint_dev_token(Settings(jwt_secret=JWT_SECRET, api_keys=API_KEY), user_id=user_id)


def start_relay(folder: Path, url: str, **env: str) -> RelayProcess:
    """relay serve with webhooks to `url`."""
    policy = folder / "policy.toml"
    policy.write_text(POLICY)
    values = {
        **RELAY_ENV,
        "RELAY_POLICY_FILE": str(policy),
        "RELAY_WEBHOOK_URL": url,
        "RELAY_WEBHOOK_HOLD_SECONDS": str(HOLD),
        **env,
    }
    return RelayProcess(values, folder / "relay.log")


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[Receiver, str]]:
    """A backend checking Pusher signatures under the relay's app key and secret."""
    receiver = Receiver(app_key=APP_KEY, app_secret=APP_SECRET)
    receiver.pusher.app_id = APP_ID
    with ReceiverThread(receiver) as url:
        yield receiver, url


@pytest.fixture(scope="module")
def relay(
    backend: tuple[Receiver, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RelayProcess]:
    process = start_relay(tmp_path_factory.mktemp("webhooks"), backend[1])
    yield process
    process.stop()


@pytest.fixture
def clients(relay: RelayProcess) -> Iterator[PusherAgent]:
    agent = PusherAgent(relay, APP_KEY)
    try:
        yield agent
    finally:
        agent.close()


def on(receiver: Receiver, channel: str) -> list[tuple[str, str | None]]:
    """(kind, user_id) of the verified events of one channel, in order."""
    return [(e["name"], e.get("user_id")) for e in receiver.events if e["channel"] == channel]


def wait_on(
    receiver: Receiver, channel: str, count: int, within: float = 10
) -> list[tuple[str, str | None]]:
    deadline = time.monotonic() + within
    while len(found := on(receiver, channel)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{channel}: {found}, fewer than {count} events")
        time.sleep(0.05)
    return found


def test_presence_join_client_event_and_leave(
    backend: tuple[Receiver, str], clients: PusherAgent
) -> None:
    receiver, _ = backend
    channel = "presence-chat-join"
    clients.connect("ann", token("ann"))
    assert clients.subscribe("ann", channel)["type"] == "subscribed"
    clients.connect("bob", token("bob"))
    assert clients.subscribe("bob", channel)["type"] == "subscribed"
    clients.send(op="trigger", client="bob", channel=channel, event="client-typing", data={})
    assert wait_on(receiver, channel, 4) == [
        ("channel_occupied", None),
        ("member_added", "ann"),
        ("member_added", "bob"),
        ("client_event", "bob"),
    ]
    left = time.monotonic()
    clients.send(op="disconnect", client="bob")
    assert wait_on(receiver, channel, 5)[-1] == ("member_removed", "bob")
    assert time.monotonic() - left >= HOLD - 0.5  # held, as Pusher holds it
    clients.send(op="disconnect", client="ann")
    assert wait_on(receiver, channel, 7)[-2:] == [
        ("member_removed", "ann"),
        ("channel_vacated", None),
    ]
    client_event = next(e for e in receiver.events if e["name"] == "client_event")
    assert client_event["event"] == "client-typing"
    assert client_event["socket_id"]
    assert receiver.refused == []


def test_a_reconnect_inside_the_hold_is_no_leave(
    backend: tuple[Receiver, str], clients: PusherAgent
) -> None:
    receiver, _ = backend
    channel = "presence-chat-reload"
    clients.connect("cy", token("cy"))
    clients.subscribe("cy", channel)
    assert wait_on(receiver, channel, 2) == [("channel_occupied", None), ("member_added", "cy")]
    clients.send(op="disconnect", client="cy")  # a page reload
    time.sleep(0.3)
    clients.connect("cy-again", token("cy"))
    clients.subscribe("cy-again", channel)
    time.sleep(HOLD + 1.5)
    assert on(receiver, channel) == [("channel_occupied", None), ("member_added", "cy")]
    clients.send(op="disconnect", client="cy-again")
    assert wait_on(receiver, channel, 4)[2:] == [
        ("member_removed", "cy"),
        ("channel_vacated", None),
    ]


def test_occupied_vacated_and_a_cache_miss(
    backend: tuple[Receiver, str], clients: PusherAgent
) -> None:
    receiver, _ = backend
    clients.connect("p")
    clients.subscribe("p", "cache-scores")
    clients.subscribe("p", "news-webhooks")
    assert wait_on(receiver, "cache-scores", 2) == [
        ("channel_occupied", None),
        ("cache_miss", None),
    ]
    clients.send(op="unsubscribe", client="p", channel="news-webhooks")
    assert wait_on(receiver, "news-webhooks", 2, within=HOLD + 5) == [
        ("channel_occupied", None),
        ("channel_vacated", None),
    ]


def test_a_500_is_retried_until_the_backend_takes_it(
    backend: tuple[Receiver, str], clients: PusherAgent
) -> None:
    receiver, _ = backend
    before = receiver.requests
    receiver.failures = [500, 502]
    clients.connect("r")
    clients.subscribe("r", "retried")
    assert wait_on(receiver, "retried", 1) == [("channel_occupied", None)]
    assert receiver.requests - before >= 3
    assert receiver.failures == []


def test_the_standard_format_verifies_with_standardwebhooks(tmp_path: Path) -> None:
    receiver = Receiver(fmt="standard")
    with ReceiverThread(receiver) as url:
        relay = start_relay(
            tmp_path,
            url,
            RELAY_WEBHOOK_FORMAT="standard",
            RELAY_WEBHOOK_SECRET=WEBHOOK_SECRET,
            RELAY_WEBHOOK_EVENTS="channel_occupied,member_added",
        )
        agent = PusherAgent(relay, APP_KEY)
        try:
            agent.connect("s", token("s"))
            agent.subscribe("s", "presence-chat-std")
            assert wait_on(receiver, "presence-chat-std", 2) == [
                ("channel_occupied", None),
                ("member_added", "s"),
            ]
        finally:
            agent.close()
            relay.stop()
    assert receiver.ids
    assert receiver.refused == []
    assert WEBHOOK_SECRET not in relay.log()
