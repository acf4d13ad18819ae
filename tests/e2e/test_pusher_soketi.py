"""The pusher provider end to end: `relay serve` → soketi (a Pusher-protocol server) → pusher-js.

pusher-js clients open their WebSocket to soketi and authorize through the relay's /auth/channel
and /auth/user; the relay publishes through soketi's HTTP API, and soketi's webhooks come back to
the relay's /v1/webhooks/pusher. soketi refuses more than 100 channels per /events call and more
than 10 events per /batch_events call, so the relay's chunking is checked by the real server.
"""

from __future__ import annotations

import base64
import json
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pusher
import pusher.signature
import pytest

from core.settings import Settings
from core.tokens import mint_dev_token
from tests.e2e.conftest import API_KEY, JWT_SECRET
from tests.e2e.harness import ROOT, PusherAgent, RelayProcess, free_port
from tests.e2e.soketi import SoketiProcess, pusher_relay_env

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.e2e.harness import Observation

pytestmark = pytest.mark.e2e

PUSHER_APP_ID = "770077"
PUSHER_KEY = "soketi-e2e-key"
PUSHER_SECRET = "soketi-e2e-secret-0123456789abcdef"
MASTER_KEY_BASE64 = base64.b64encode(bytes(range(100, 132))).decode()
USER_AGENT = ROOT / "tests" / "e2e" / "js" / "user_agent.mjs"
WEBHOOK_PATH = "/v1/webhooks/pusher"
PROBLEM = "application/problem+json"


# -- processes -------------------------------------------------------------------------------
class SoketiAgent(PusherAgent):
    """pusher-js clients whose WebSocket goes to soketi; signed-in clients report user events."""

    def __init__(self, relay: RelayProcess, soketi: SoketiProcess) -> None:
        # PusherAgent.__init__ with the extended agent script (user_agent.mjs wraps agent.mjs).
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed: install Node.js 20")
        self.relay = relay
        self.app_key = soketi.key
        self.soketi = soketi
        self.process = subprocess.Popen(
            [node, str(USER_AGENT)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.seen: list[Observation] = []
        self._inbox: queue.Queue[Observation] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect(lambda o: o["type"] == "ready")

    def connect(self, client: str, token: str | None = None, *, ws_port: int | None = None) -> str:
        """Connect to soketi (authorizing through the relay); return the socket id."""
        return super().connect(client, token, ws_port=ws_port or self.soketi.port)


@dataclass(frozen=True, slots=True)
class Stack:
    """The relay on the pusher provider, and the soketi it publishes to."""

    relay: RelayProcess
    soketi: SoketiProcess


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One relay and one soketi for the module (each needs the other's port: soketi's first)."""
    folder = tmp_path_factory.mktemp("pusher-soketi")
    soketi_port = free_port()
    env = pusher_relay_env(
        soketi_port,
        app_id=PUSHER_APP_ID,
        key=PUSHER_KEY,
        secret=PUSHER_SECRET,
        PUSHER_ENCRYPTION_MASTER_KEY_BASE64=MASTER_KEY_BASE64,
        PUSHER_TIMEOUT_SECONDS="1",  # the frozen-soketi test waits max_attempts (3) of these
        # The relay's own default (100 channels per event) would stop a 150-channel publish
        # before the provider's chunking is reached.
        RELAY_MAX_CHANNELS_PER_EVENT="500",
        # The outage test makes five failing calls in a row (four publishes and a channel
        # query, which pass the same circuit breaker) and then expects soketi back at once: the
        # default of five would hold the breaker open for its cooldown
        # (tests/unit/core/test_breaker.py).
        RELAY_BREAKER_FAILURES="10",
    )
    relay = RelayProcess(env, folder / "relay.log")
    try:
        soketi = SoketiProcess(
            app_id=PUSHER_APP_ID,
            key=PUSHER_KEY,
            secret=PUSHER_SECRET,
            port=soketi_port,
            log_path=folder / "soketi.log",
            webhook_url=relay.base + WEBHOOK_PATH,
            webhook_batching_ms=50,
        )
    except BaseException:
        relay.stop()
        raise
    try:
        yield Stack(relay, soketi)
    finally:
        try:
            soketi.stop()
        finally:
            relay.stop()


@pytest.fixture
def clients(stack: Stack) -> Iterator[SoketiAgent]:
    """pusher-js clients for one test."""
    agent = SoketiAgent(stack.relay, stack.soketi)
    try:
        yield agent
    finally:
        agent.close()


# -- helpers ---------------------------------------------------------------------------------
def token(user_id: str, name: str | None = None) -> str:
    """A JWT the relay accepts."""
    settings = Settings(jwt_secret=JWT_SECRET, api_keys=API_KEY)
    return mint_dev_token(settings, user_id=user_id, name=name)


def api(
    relay: RelayProcess, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """Call the relay's REST API as the backend."""
    return httpx.request(
        method, relay.base + path, json=body, headers={"X-API-Key": API_KEY}, timeout=15
    )


def event_on(client: str, channel: str, event: str) -> Callable[[Observation], bool]:
    """Matcher for one event on one channel at one client."""
    return lambda o: (
        o["type"] == "event"
        and o["client"] == client
        and o["channel"] == channel
        and o["event"] == event
    )


def signed_in(client: str) -> Callable[[Observation], bool]:
    """Matcher for a client's pusher:signin_success."""
    return lambda o: o["type"] == "signed_in" and o["client"] == client


def user_ready(socket_id: str) -> Callable[[Observation], bool]:
    """Matcher for a signed-in socket whose #server-to-user- channel is subscribed: events sent
    to its user reach it from then on (pusher-js subscribes after pusher:signin_success)."""
    return lambda o: o["type"] == "user_ready" and o["socket_id"] == socket_id


def log_messages(relay: RelayProcess) -> list[str]:
    """The `message` of every JSON log line the relay printed."""
    messages = []
    for line in relay.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("message"), str):
            messages.append(entry["message"])
    return messages


def wait_for_log(
    relay: RelayProcess, wanted: str, *, more_than: int = 0, timeout: float = 5
) -> list[str]:
    """Wait until more than `more_than` log messages contain `wanted`; return the messages."""
    deadline = time.monotonic() + timeout
    while True:
        messages = log_messages(relay)
        if sum(wanted in m for m in messages) > more_than:
            return messages
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {wanted!r}; last: {messages[-15:]}")
        time.sleep(0.05)


def webhook_events(relay: RelayProcess, channel: str) -> list[str]:
    """The kinds of the verified webhook events the relay logged for one channel, in order."""
    suffix = f" on {channel}"
    prefix = "webhook pusher: "
    return [
        m.removeprefix(prefix).removesuffix(suffix)
        for m in log_messages(relay)
        if m.startswith(prefix) and m.endswith(suffix)
    ]


def signed_webhook(body: bytes, *, key: str = PUSHER_KEY, secret: str = PUSHER_SECRET) -> Any:
    """Headers as Pusher (and soketi) sign a webhook."""
    return {
        "Content-Type": "application/json",
        "X-Pusher-Key": key,
        "X-Pusher-Signature": pusher.signature.sign(secret, body.decode()),
    }


# -- subscriptions and publishing ------------------------------------------------------------
def test_private_channels_receive_one_and_many_channel_publishes(
    stack: Stack, clients: SoketiAgent
) -> None:
    clients.connect("alice", token=token("alice"))
    watched = ["private-fan-0", "private-fan-99", "private-fan-100", "private-fan-149"]
    for channel in ["private-user-alice", *watched]:
        assert clients.subscribe("alice", channel)["type"] == "subscribed"

    one = api(stack.relay, "POST", "/v1/events", {
        "name": "hello", "channel": "private-user-alice", "data": {"text": "héllo"},
    })  # fmt: skip
    assert one.status_code == 200, one.text
    assert one.json()["accepted"] == 1
    assert clients.expect(event_on("alice", "private-user-alice", "hello"))["data"] == {
        "text": "héllo"
    }

    # 150 channels: soketi refuses more than 100 per call, so this passes only when chunked.
    channels = [f"private-fan-{i}" for i in range(150)]
    many = api(stack.relay, "POST", "/v1/events", {
        "name": "fanout", "channels": channels, "data": {"n": 150},
    })  # fmt: skip
    assert many.status_code == 200, many.text
    assert many.json()["accepted"] == 150
    assert sorted(r["channel"] for r in many.json()["receipts"]) == sorted(channels)
    for channel in watched:
        assert clients.expect(event_on("alice", channel, "fanout"))["data"] == {"n": 150}
    clients.never(lambda o: o["type"] == "event" and o["event"] == "fanout", wait=0.3)


def test_batch_of_25_events_is_delivered(stack: Stack, clients: SoketiAgent) -> None:
    clients.connect("bo", token=token("bo"))
    rooms = ["private-room-a", "private-room-b", "private-room-c"]
    for room in rooms:
        assert clients.subscribe("bo", room)["type"] == "subscribed"
    batch = [{"name": "tick", "channel": rooms[i % 3], "data": {"i": i}} for i in range(25)]
    # soketi refuses more than 10 events per batch call: 25 pass only when chunked.
    answer = api(stack.relay, "POST", "/v1/batch", {"batch": batch})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 25
    got: dict[str, list[int]] = {room: [] for room in rooms}
    for _ in range(25):
        obs = clients.expect(lambda o: o["type"] == "event" and o["event"] == "tick")
        got[obs["channel"]].append(obs["data"]["i"])
    for n, room in enumerate(rooms):
        assert sorted(got[room]) == list(range(n, 25, 3))
    clients.never(lambda o: o["type"] == "event" and o["event"] == "tick", wait=0.3)


def test_encrypted_channels_are_decrypted_by_pusher_js(stack: Stack, clients: SoketiAgent) -> None:
    clients.connect("eve", token=token("eve"))
    secret_rooms = ["private-encrypted-vault", "private-encrypted-safe"]
    for room in [*secret_rooms, "private-plain"]:
        assert clients.subscribe("eve", room)["type"] == "subscribed"
    plaintext = {"card": "4111 1111", "note": "naïve ☃"}

    single = api(stack.relay, "POST", "/v1/events", {
        "name": "sealed", "channel": "private-encrypted-vault", "data": plaintext,
    })  # fmt: skip
    assert single.status_code == 200, single.text
    assert clients.expect(event_on("eve", "private-encrypted-vault", "sealed"))["data"] == plaintext

    # Encrypted and plain channels in one request: refused, as Pusher's SDKs refuse it (each
    # encrypted channel has its own key), before anything reaches Pusher.
    mixed = api(stack.relay, "POST", "/v1/events", {
        "name": "mixed", "channels": [*secret_rooms, "private-plain"], "data": "just text",
    })  # fmt: skip
    assert mixed.status_code == 400, mixed.text
    assert mixed.json()["type"] == "urn:realtime-relay:problem:encrypted-multi-channel"
    clients.never(lambda o: o["type"] == "event" and o["event"] == "mixed", wait=0.5)

    batch = [
        {"name": "sealed-batch", "channel": secret_rooms[i % 2], "data": {"i": i}} for i in range(4)
    ]
    answer = api(stack.relay, "POST", "/v1/batch", {"batch": batch})
    assert answer.status_code == 200, answer.text
    got = sorted(
        clients.expect(lambda o: o["type"] == "event" and o["event"] == "sealed-batch")["data"]["i"]
        for _ in range(4)
    )
    assert got == [0, 1, 2, 3]
    # pusher-js reports an event it could not decrypt as nothing at all: no raw ciphertext seen.
    assert not any(
        isinstance(o.get("data"), dict) and "ciphertext" in o["data"] for o in clients.seen
    )


def test_socket_id_exclusion(stack: Stack, clients: SoketiAgent) -> None:
    sender = clients.connect("sender", token=token("sender"))
    clients.connect("other", token=token("other"))
    for client in ("sender", "other"):
        assert clients.subscribe(client, "private-scores")["type"] == "subscribed"
    answer = api(stack.relay, "POST", "/v1/events", {
        "name": "goal", "channel": "private-scores", "data": {"n": 1}, "socket_id": sender,
    })  # fmt: skip
    assert answer.status_code == 200, answer.text
    batch = {"batch": [
        {"name": "goal", "channel": "private-scores", "data": {"n": 2}, "socket_id": sender},
        {"name": "goal", "channel": "private-scores", "data": {"n": 3}},
    ]}  # fmt: skip
    assert api(stack.relay, "POST", "/v1/batch", batch).status_code == 200
    got = sorted(clients.expect(event_on("other", "private-scores", "goal"))["data"]["n"]
                 for _ in range(3))  # fmt: skip
    assert got == [1, 2, 3]
    assert clients.expect(event_on("sender", "private-scores", "goal"))["data"] == {"n": 3}
    clients.never(event_on("sender", "private-scores", "goal"), wait=0.5)


def test_private_user_channel_of_another_user_is_refused(
    stack: Stack, clients: SoketiAgent
) -> None:
    clients.connect("mallory", token=token("mallory"))
    refused = clients.subscribe("mallory", "private-user-victim")
    assert refused["type"] == "subscription_error"
    assert refused["status"] == 403
    clients.connect("anon")
    anonymous = clients.subscribe("anon", "private-anything")
    assert (anonymous["type"], anonymous["status"]) == ("subscription_error", 401)
    clients.connect("victim", token=token("victim"))
    assert clients.subscribe("victim", "private-user-victim")["type"] == "subscribed"
    answer = api(stack.relay, "POST", "/v1/events", {
        "name": "dm", "channel": "private-user-victim", "data": "for your eyes",
    })  # fmt: skip
    assert answer.status_code == 200
    assert (
        clients.expect(event_on("victim", "private-user-victim", "dm"))["data"] == "for your eyes"
    )
    clients.never(lambda o: o["client"] == "mallory" and o["type"] == "event", wait=0.3)


def test_a_batch_keeps_its_order_on_one_channel(stack: Stack, clients: SoketiAgent) -> None:
    clients.connect("ord", token=token("ord"))
    assert clients.subscribe("ord", "private-order")["type"] == "subscribed"
    batch = [{"name": "v", "channel": "private-order", "data": d} for d in ("1", "2", "1")]
    answer = api(stack.relay, "POST", "/v1/batch", {"batch": batch})
    assert answer.status_code == 200, answer.text
    got = [clients.expect(event_on("ord", "private-order", "v"))["data"] for _ in range(3)]
    clients.never(event_on("ord", "private-order", "v"), wait=0.3)
    # The last state the client sees must be the batch's last event.
    assert got == [1, 2, 1]


# -- presence, occupancy, webhooks -----------------------------------------------------------
def _members(relay: RelayProcess, channel: str) -> list[str]:
    answer = api(relay, "GET", f"/v1/channels/{channel}/members")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    ids = sorted(m["user_id"] for m in body["members"])
    assert body["count"] == len(ids)
    return ids


def test_presence_members_agree_with_the_clients_and_webhooks_arrive(
    stack: Stack, clients: SoketiAgent
) -> None:
    channel = "presence-lobby"
    assert webhook_events(stack.relay, channel) == []
    clients.connect("ann", token=token("ann", "Ann"))
    first = clients.subscribe("ann", channel)
    assert first["members"] == ["ann"]
    assert first["me"] == {"id": "ann", "info": {"name": "Ann"}}
    assert _members(stack.relay, channel) == ["ann"]

    clients.connect("ben", token=token("ben", "Ben"))
    joined = clients.subscribe("ben", channel)
    assert joined["members"] == ["ann", "ben"]
    added = clients.expect(lambda o: o["type"] == "member_added" and o["client"] == "ann")
    assert (added["id"], added["info"]) == ("ben", {"name": "Ben"})
    assert _members(stack.relay, channel) == joined["members"]

    info = api(stack.relay, "GET", f"/v1/channels/{channel}")
    assert info.status_code == 200, info.text
    assert info.json() == {
        "channel": channel,
        "occupied": True,
        "subscription_count": 2,
        "user_count": 2,
    }

    clients.send(op="trigger", client="ben", channel=channel, event="client-wave", data={"hi": 1})
    assert clients.expect(lambda o: o["type"] == "triggered")["ok"] is True
    assert clients.expect(event_on("ann", channel, "client-wave"))["data"] == {"hi": 1}

    clients.send(op="disconnect", client="ben")
    removed = clients.expect(lambda o: o["type"] == "member_removed" and o["client"] == "ann")
    assert removed["id"] == "ben"
    assert _members(stack.relay, channel) == ["ann"]
    clients.send(op="disconnect", client="ann")

    # soketi's webhooks reach the relay, verify and are normalized (logged one line per event).
    wait_for_log(stack.relay, f"webhook pusher: channel_vacated on {channel}")
    kinds = webhook_events(stack.relay, channel)
    assert sorted(kinds) == sorted(
        [
            "channel_occupied",
            "member_added",
            "member_added",
            "client_event",
            "member_removed",
            "member_removed",
            "channel_vacated",
        ]
    )
    assert kinds[0] in ("channel_occupied", "member_added")
    assert kinds[-1] in ("channel_vacated", "member_removed")
    messages = log_messages(stack.relay)
    assert not any(m.startswith("pusher webhook refused") for m in messages)
    hook_calls = [m for m in messages if m.startswith(f"POST {WEBHOOK_PATH} ")]
    assert hook_calls
    assert all(m.startswith(f"POST {WEBHOOK_PATH} 200 ") for m in hook_calls)


def test_channel_occupancy(stack: Stack, clients: SoketiAgent) -> None:
    empty = api(stack.relay, "GET", "/v1/channels/private-nobody-here")
    assert empty.status_code == 200, empty.text
    assert empty.json()["occupied"] is False
    assert empty.json()["subscription_count"] == 0
    assert empty.json()["user_count"] is None
    for client in ("c1", "c2"):
        clients.connect(client, token=token(client))
        assert clients.subscribe(client, "private-busy")["type"] == "subscribed"
    busy = api(stack.relay, "GET", "/v1/channels/private-busy").json()
    assert (busy["occupied"], busy["subscription_count"]) == (True, 2)
    # A user may ask about a channel the policy lets them subscribe to, not about another's.
    mine = httpx.get(
        stack.relay.base + "/v1/channels/private-user-c1",
        headers={"Authorization": f"Bearer {token('c1')}"},
    )
    assert mine.status_code == 200
    theirs = httpx.get(
        stack.relay.base + "/v1/channels/private-user-c2",
        headers={"Authorization": f"Bearer {token('c1')}"},
    )
    assert theirs.status_code == 403
    assert theirs.headers["content-type"] == PROBLEM


# -- users -----------------------------------------------------------------------------------
def test_send_to_user_reaches_a_signed_in_client(stack: Stack, clients: SoketiAgent) -> None:
    ada = clients.connect("ada", token=token("ada", "Ada"))
    bob = clients.connect("bob", token=token("bob"))
    clients.send(op="signin", client="ada")
    clients.send(op="signin", client="bob")
    for client in ("ada", "bob"):
        clients.expect(signed_in(client))
    clients.expect(user_ready(ada))
    answer = api(stack.relay, "POST", "/v1/users/ada/events", {
        "name": "notice", "data": {"msg": "for Ada"},
    })  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"provider": "pusher", "user_id": "ada"}
    got = clients.expect(lambda o: o["type"] == "user_event" and o["event"] == "notice")
    assert (got["socket_id"], got["data"]) == (ada, {"msg": "for Ada"})
    clients.never(lambda o: o["type"] == "user_event" and o["socket_id"] == bob, wait=0.3)

    # A user may not address another user's connections; only a backend may.
    forbidden = httpx.post(
        stack.relay.base + "/v1/users/ada/events",
        json={"name": "notice", "data": "x"},
        headers={"Authorization": f"Bearer {token('bob')}"},
    )
    assert forbidden.status_code == 403

    # Terminating Ada's connections closes hers and leaves Bob's.
    done = api(stack.relay, "POST", "/v1/users/ada/terminate")
    assert done.status_code == 200, done.text
    clients.expect(
        lambda o: o["type"] == "state" and o["client"] == "ada" and o["state"] != "connected"
    )
    clients.never(lambda o: o["type"] == "state" and o["client"] == "bob", wait=0.3)


# -- webhooks posted by others ---------------------------------------------------------------
def _webhook_body(channel: str) -> bytes:
    return orjson.dumps(
        {
            "time_ms": int(time.time() * 1000),
            "events": [{"name": "member_added", "channel": channel, "user_id": "intruder"}],
        }
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bad-signature", "X-Pusher-Signature does not match the body"),
        ("wrong-key", "X-Pusher-Key is not this app's key"),
        ("wrong-secret", "X-Pusher-Signature does not match the body"),
        ("no-headers", "X-Pusher-Key or X-Pusher-Signature is missing"),
        ("tampered", "X-Pusher-Signature does not match the body"),
    ],
)
def test_forged_webhooks_get_401_and_change_nothing(stack: Stack, case: str, reason: str) -> None:
    channel = f"presence-forged-{case}"
    body = _webhook_body(channel)
    headers = signed_webhook(body)
    if case == "bad-signature":
        headers["X-Pusher-Signature"] = "0" * 64
    elif case == "wrong-key":
        headers = signed_webhook(body, key="someone-elses-key")
    elif case == "wrong-secret":
        headers = signed_webhook(body, secret="not-the-secret-at-all")
    elif case == "no-headers":
        headers = {"Content-Type": "application/json"}
    else:
        body = body.replace(b"intruder", b"intrudes")
    logged = f"pusher webhook refused: {reason}"
    before = sum(logged in m for m in log_messages(stack.relay))
    answer = httpx.post(stack.relay.base + WEBHOOK_PATH, content=body, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["type"] == "urn:realtime-relay:problem:invalid-signature"
    assert problem["detail"] == reason
    assert PUSHER_SECRET not in answer.text
    messages = wait_for_log(stack.relay, logged, more_than=before)
    assert webhook_events(stack.relay, channel) == []
    assert not any(PUSHER_SECRET in m for m in messages)
    assert PUSHER_SECRET not in stack.relay.log()


def test_sdk_signed_webhook_is_accepted_and_normalized(stack: Stack) -> None:
    sdk = pusher.Pusher(app_id=PUSHER_APP_ID, key=PUSHER_KEY, secret=PUSHER_SECRET)
    body = orjson.dumps(
        {
            "time_ms": int(time.time() * 1000),
            "events": [
                {"name": "member_added", "channel": "presence-sdk", "user_id": "u1"},
                {
                    "name": "client_event",
                    "channel": "presence-sdk",
                    "event": "client-typing",
                    "data": '{"on":true}',
                    "socket_id": "123.456",
                    "user_id": "u1",
                },
            ],
        }
    )
    headers = signed_webhook(body)
    # The official SDK (the oracle) accepts what the relay accepts...
    assert sdk.validate_webhook(PUSHER_KEY, headers["X-Pusher-Signature"], body) is not None
    answer = httpx.post(stack.relay.base + WEBHOOK_PATH, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "provider": "pusher",
        "events": [
            {
                "kind": "member_added",
                "channel": "presence-sdk",
                "time_ms": orjson.loads(body)["time_ms"],
                "user_id": "u1",
                "event": None,
                "data": None,
                "socket_id": None,
            },
            {
                "kind": "client_event",
                "channel": "presence-sdk",
                "time_ms": orjson.loads(body)["time_ms"],
                "user_id": "u1",
                "event": "client-typing",
                "data": '{"on":true}',
                "socket_id": "123.456",
            },
        ],
    }
    # ...and refuses what the relay refuses.
    tampered = body.replace(b"u1", b"u2")
    assert sdk.validate_webhook(PUSHER_KEY, headers["X-Pusher-Signature"], tampered) is None
    refused = httpx.post(stack.relay.base + WEBHOOK_PATH, content=tampered, headers=headers)
    assert refused.status_code == 401


# -- soketi down (last: it stops and restarts the module's soketi) ---------------------------
def test_publishes_fail_fast_and_report_nothing_delivered_while_soketi_is_down(
    stack: Stack, clients: SoketiAgent
) -> None:
    stack.soketi.stop()
    try:
        attempts: list[tuple[str, dict[str, Any]]] = [
            ("/v1/events", {"name": "lost", "channel": "private-down", "data": "1"}),
            ("/v1/events", {"name": "lost", "channels": ["private-down", "down-2"], "data": "2"}),
            ("/v1/batch", {"batch": [{"name": "lost", "channel": "private-down", "data": "3"}]}),
            ("/v1/events", {"name": "lost", "channel": "private-encrypted-down", "data": "4"}),
        ]
        for path, body in attempts:
            started = time.monotonic()
            answer = api(stack.relay, "POST", path, body)
            elapsed = time.monotonic() - started
            assert answer.status_code in (502, 503), answer.text
            assert elapsed < 5, f"{path} took {elapsed:.1f}s"
            assert answer.headers["content-type"] == PROBLEM
            problem = answer.json()
            assert problem["accepted"] is False
            assert "receipts" not in problem
            assert problem["type"].startswith("urn:realtime-relay:problem:provider-")
            assert PUSHER_SECRET not in answer.text
        down = api(stack.relay, "GET", "/v1/channels/private-down")
        assert down.status_code in (502, 503)
        assert "pusher" in down.json()["detail"]
    finally:
        stack.soketi.start()

    # Back up: the relay recovers (its pooled connections died with soketi), and nothing that
    # failed is delivered late.
    clients.connect("late", token=token("late"))
    assert clients.subscribe("late", "private-down")["type"] == "subscribed"
    answer = api(stack.relay, "POST", "/v1/events", {
        "name": "back", "channel": "private-down", "data": "up",
    })  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert clients.expect(event_on("late", "private-down", "back"))["data"] == "up"
    clients.never(event_on("late", "private-down", "lost"), wait=0.5)


def test_a_frozen_soketi_is_a_504_with_delivery_unknown_and_never_a_duplicate(
    stack: Stack, clients: SoketiAgent
) -> None:
    clients.connect("thaw", token=token("thaw"))
    assert clients.subscribe("thaw", "private-frozen")["type"] == "subscribed"
    stack.soketi.pause()
    try:
        started = time.monotonic()
        answer = api(stack.relay, "POST", "/v1/events", {
            "name": "cold", "channel": "private-frozen", "data": "brr",
        })  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        stack.soketi.resume()
    assert answer.status_code == 504, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["accepted"] is None  # the request reached soketi unanswered
    # One attempt of PUSHER_TIMEOUT_SECONDS=1: a sent but unanswered publish is not retried.
    assert 1 <= elapsed < 3
    # soketi delivers what it had once it runs again: exactly once, never duplicated.
    assert clients.expect(event_on("thaw", "private-frozen", "cold"), timeout=5)["data"] == "brr"
    clients.never(event_on("thaw", "private-frozen", "cold"), wait=1.0)
    ok = api(stack.relay, "POST", "/v1/events", {
        "name": "warm", "channel": "private-frozen", "data": "ok",
    })  # fmt: skip
    assert ok.status_code == 200, ok.text


def test_soketi_log_is_kept(stack: Stack) -> None:
    assert Path(stack.soketi.log_path).exists()
    assert "Server is up and running" in stack.soketi.log()
    assert stack.soketi.running
