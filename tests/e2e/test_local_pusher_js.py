"""pusher-js (Node) against `relay serve` on the local provider: the quickstart, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pusher
import pytest

from core.settings import Settings
from core.tokens import mint_dev_token
from tests.e2e.conftest import API_KEY, APP_ID, APP_KEY, APP_SECRET, JWT_SECRET

if TYPE_CHECKING:
    from tests.e2e.harness import Observation, PusherAgent, RelayProcess

pytestmark = pytest.mark.e2e


def token(user_id: str, name: str | None = None) -> str:
    """A JWT the test relays accept."""
    settings = Settings(jwt_secret=JWT_SECRET, api_keys=API_KEY)
    return mint_dev_token(settings, user_id=user_id, name=name)


def publish(relay: RelayProcess, body: dict[str, Any], path: str = "/v1/events") -> httpx.Response:
    """POST to the relay's REST API with the backend key."""
    return httpx.post(relay.base + path, json=body, headers={"X-API-Key": API_KEY}, timeout=5)


def event_on(client: str, channel: str, event: str) -> Any:
    """Matcher for one event on one channel at one client."""
    return lambda o: (
        o["type"] == "event"
        and o["client"] == client
        and o["channel"] == channel
        and o["event"] == event
    )


def test_public_channel_receives_rest_publish(relay: RelayProcess, clients: PusherAgent) -> None:
    clients.connect("a")
    assert clients.subscribe("a", "news")["type"] == "subscribed"
    response = publish(relay, {"name": "headline", "channel": "news", "data": {"text": "héllo"}})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    got = clients.expect(event_on("a", "news", "headline"))
    assert got["data"] == {"text": "héllo"}


def test_private_channel_needs_the_right_user(relay: RelayProcess, clients: PusherAgent) -> None:
    clients.connect("alice", token=token("alice"))
    assert clients.subscribe("alice", "private-user-alice")["type"] == "subscribed"
    refused = clients.subscribe("alice", "private-user-bob")
    assert refused["type"] == "subscription_error"
    assert refused["status"] == 403
    clients.connect("anon")
    anonymous = clients.subscribe("anon", "private-team")
    assert anonymous["type"] == "subscription_error"
    assert anonymous["status"] == 401
    both = ["private-user-alice", "private-user-bob"]
    assert publish(relay, {"name": "dm", "channels": both, "data": "hi"}).status_code == 200
    assert clients.expect(event_on("alice", "private-user-alice", "dm"))["data"] == "hi"
    clients.never(event_on("alice", "private-user-bob", "dm"))


def test_presence_join_and_leave_once_per_user(relay: RelayProcess, clients: PusherAgent) -> None:
    channel = "presence-lobby"
    clients.connect("ann1", token=token("ann", "Ann"))
    first = clients.subscribe("ann1", channel)
    assert first["members"] == ["ann"]
    assert first["me"] == {"id": "ann", "info": {"name": "Ann"}}

    clients.connect("ben", token=token("ben", "Ben"))
    joined = clients.subscribe("ben", channel)
    assert joined["members"] == ["ann", "ben"]
    added = clients.expect(lambda o: o["type"] == "member_added" and o["client"] == "ann1")
    assert (added["id"], added["info"]) == ("ben", {"name": "Ben"})

    # A second socket of Ann's is not a second member, and its leaving removes nobody.
    clients.connect("ann2", token=token("ann", "Ann"))
    assert clients.subscribe("ann2", channel)["members"] == ["ann", "ben"]
    clients.never(lambda o: o["type"] == "member_added" and o["client"] == "ben", wait=0.5)
    clients.send(op="disconnect", client="ann2")
    clients.never(lambda o: o["type"] == "member_removed" and o["client"] == "ben", wait=0.5)

    members = httpx.get(
        f"{relay.base}/v1/channels/{channel}/members", headers={"X-API-Key": API_KEY}
    ).json()
    assert sorted(m["user_id"] for m in members["members"]) == ["ann", "ben"]

    clients.send(op="disconnect", client="ann1")
    removed = clients.expect(lambda o: o["type"] == "member_removed" and o["client"] == "ben")
    assert removed["id"] == "ann"


def test_batch_and_socket_exclusion(relay: RelayProcess, clients: PusherAgent) -> None:
    sender = clients.connect("sender")
    clients.connect("other")
    for client in ("sender", "other"):
        clients.subscribe(client, "scores")
    body = {
        "batch": [
            {"name": "goal", "channel": "scores", "data": {"n": 1}, "socket_id": sender},
            {"name": "goal", "channel": "scores", "data": {"n": 2}},
        ]
    }
    assert publish(relay, body, "/v1/batch").status_code == 200
    got = [clients.expect(event_on("other", "scores", "goal"))["data"]["n"] for _ in range(2)]
    assert got == [1, 2]
    assert clients.expect(event_on("sender", "scores", "goal"))["data"] == {"n": 2}
    clients.never(event_on("sender", "scores", "goal"), wait=0.5)


def test_official_pusher_sdk_publishes_to_the_local_relay(
    relay: RelayProcess, clients: PusherAgent
) -> None:
    clients.connect("sdk-watcher")
    clients.subscribe("sdk-watcher", "sdk")
    sdk = pusher.Pusher(
        app_id=APP_ID, key=APP_KEY, secret=APP_SECRET, host="127.0.0.1", port=relay.port, ssl=False
    )
    sdk.trigger(["sdk"], "single", {"via": "trigger"})
    sdk.trigger_batch([{"channel": "sdk", "name": "batched", "data": {"via": "batch"}}])
    assert clients.expect(event_on("sdk-watcher", "sdk", "single"))["data"] == {"via": "trigger"}
    assert clients.expect(event_on("sdk-watcher", "sdk", "batched"))["data"] == {"via": "batch"}
    wrong = pusher.Pusher(
        app_id=APP_ID,
        key=APP_KEY,
        secret="not-the-secret",
        host="127.0.0.1",
        port=relay.port,
        ssl=False,
    )
    with pytest.raises(pusher.errors.PusherBadAuth):
        wrong.trigger(["sdk"], "forged", {})
    clients.never(event_on("sdk-watcher", "sdk", "forged"), wait=0.5)


def test_sse_client_receives_the_same_events(relay: RelayProcess) -> None:
    lines: list[str] = []
    connected = threading.Event()
    got_event = threading.Event()

    def listen() -> None:
        with httpx.stream(
            "GET", relay.base + "/v1/stream", params={"channel": "sse-news"}, timeout=10
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith("data:") and '"connected"' in line:
                    connected.set()
                if line.startswith("data:") and '"event"' in line:
                    got_event.set()
                if got_event.is_set() and line == ": heartbeat":
                    return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert connected.wait(5)
    assert publish(relay, {"name": "flash", "channel": "sse-news", "data": {"x": 1}}).is_success
    reader.join(10)
    assert got_event.is_set()
    events = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    assert events[0]["type"] == "connected"
    assert events[1] == {
        "type": "event",
        "channel": "sse-news",
        "event": "flash",
        "data": {"x": 1},  # as published: an object stays an object on SSE
    }
    assert any(line.startswith("id: ") for line in lines)
    assert ": heartbeat" in lines


def test_sse_refuses_a_private_channel_without_a_token(relay: RelayProcess) -> None:
    response = httpx.get(relay.base + "/v1/stream", params={"channel": "private-user-x"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_relay_publish_cli_reaches_pusher_js(relay: RelayProcess, clients: PusherAgent) -> None:
    clients.connect("cli-watcher")
    clients.subscribe("cli-watcher", "cli")
    relay_bin = str(Path(sys.executable).with_name("relay"))
    done = subprocess.run(
        [relay_bin, "publish", "cli", "greeting", '{"hello": "world"}'],
        env={**relay.env, **os.environ, "RELAY_PORT": str(relay.port), "RELAY_API_KEYS": API_KEY},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert clients.expect(event_on("cli-watcher", "cli", "greeting"))["data"] == {"hello": "world"}


def test_client_events_only_where_the_policy_allows(
    chat_relay: RelayProcess, chat_clients: PusherAgent
) -> None:
    chat_clients.connect("u1", token=token("u1", "One"))
    chat_clients.connect("u2", token=token("u2", "Two"))
    for client in ("u1", "u2"):
        assert chat_clients.subscribe(client, "presence-chat-7")["type"] == "subscribed"
        assert chat_clients.subscribe(client, "private-quiet-7")["type"] == "subscribed"
    chat_clients.send(op="bind", client="u2", channel="presence-chat-7", event="client-typing")
    chat_clients.send(
        op="trigger",
        client="u1",
        channel="presence-chat-7",
        event="client-typing",
        data={"on": True},
    )
    typed: Observation = chat_clients.expect(
        lambda o: o["type"] == "bound" and o["client"] == "u2" and o["event"] == "client-typing"
    )
    assert typed["data"] == {"on": True}
    assert typed["user_id"] == "u1"
    chat_clients.never(event_on("u1", "presence-chat-7", "client-typing"), wait=0.3)
    chat_clients.send(
        op="trigger", client="u1", channel="private-quiet-7", event="client-typing", data={}
    )
    chat_clients.never(event_on("u2", "private-quiet-7", "client-typing"))
