"""History on the pusher provider end to end: `relay serve` (RELAY_PROVIDER=pusher) publishes
through soketi, which delivers to pusher-js; the relay keeps the history (Pusher keeps none).
The ids soketi delivers in the envelope are the history's, `since=` answers from them, and
examples/recovery.js recovers a dropped pusher-js socket on soketi (issue 16)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.conftest import API_KEY
from tests.e2e.harness import PusherAgent, RelayProcess, free_port
from tests.e2e.soketi import SoketiProcess, pusher_relay_env
from tests.e2e.test_history_local import POLICY as LOCAL_POLICY
from tests.e2e.test_history_recovery_js import (
    KEEP,
    POLICY,
    SCRIPT,
    check_recovery,
    publish_numbers,
    subscribe_recoverable,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e

PUSHER_APP_ID = "770078"
PUSHER_KEY = "soketi-history-key"
PUSHER_SECRET = "soketi-history-secret-0123456789abcdef"
PROBLEM = "urn:realtime-relay:problem:"
# The recovery policy's enveloped news-{topic}, then the local history test's: encrypted
# channels granted history (which the relay must not keep) and every other channel recorded.
HISTORY_POLICY = POLICY + LOCAL_POLICY


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RelayProcess, int]]:
    """The relay on the pusher provider against soketi (memory store); soketi's port."""
    folder = tmp_path_factory.mktemp("history-soketi")
    policy = folder / "policy.toml"
    policy.write_text(HISTORY_POLICY)
    soketi_port = free_port()
    env = pusher_relay_env(
        soketi_port,
        app_id=PUSHER_APP_ID,
        key=PUSHER_KEY,
        secret=PUSHER_SECRET,
        PUSHER_ENCRYPTION_MASTER_KEY_BASE64=base64.b64encode(bytes(range(32))).decode(),
        RELAY_POLICY_FILE=str(policy),
        RELAY_RATE_LIMITS="false",
        RELAY_HISTORY_MAX_MESSAGES=str(KEEP),  # check_recovery compares the kept history
    )
    relay = RelayProcess(env, folder / "relay.log")
    try:
        soketi = SoketiProcess(
            app_id=PUSHER_APP_ID,
            key=PUSHER_KEY,
            secret=PUSHER_SECRET,
            port=soketi_port,
            log_path=folder / "soketi.log",
        )
    except BaseException:
        relay.stop()
        raise
    try:
        yield relay, soketi_port
    finally:
        try:
            soketi.stop()
        finally:
            relay.stop()


@pytest.fixture
def node(stack: tuple[RelayProcess, int]) -> Iterator[PusherAgent]:
    """pusher-js clients (connecting to soketi) wrapped by examples/recovery.js."""
    agent = PusherAgent(stack[0], PUSHER_KEY, script=SCRIPT)
    try:
        yield agent
    finally:
        agent.close()


def _messages(relay: RelayProcess, channel: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{relay.base}/v1/channels/{channel}/messages", params=params, timeout=5)


def test_soketi_delivers_the_history_ids_and_since_answers_from_them(
    stack: tuple[RelayProcess, int], node: PusherAgent
) -> None:
    relay, soketi_port = stack
    channel = "news-soketi"
    subscribe_recoverable(node, relay, channel, ws_port=soketi_port)
    publish_numbers(relay, channel, range(1, 5))
    raw = [node.expect(lambda o: o["type"] == "raw") for _ in range(4)]
    delivered = [o["data"] for o in raw]  # as soketi delivered them: the envelope
    assert [d["data"] for d in delivered] == [{"n": n} for n in range(1, 5)]
    ids = [d["id"] for d in delivered]

    body = _messages(relay, channel, since=ids[0], limit=2).json()
    assert [(m["id"], m["data"]) for m in body["messages"]] == [
        (ids[1], {"n": 2}),
        (ids[2], {"n": 3}),
    ]
    assert body["next"] == ids[2]
    body = _messages(relay, channel, since=body["next"]).json()
    assert [m["id"] for m in body["messages"]] == [ids[3]]
    assert body["next"] is None
    gap = _messages(relay, channel, since="0badf00d:1")
    assert gap.status_code == 410
    assert gap.json()["latest"] == ids[3]


def test_recovery_js_recovers_a_dropped_socket_on_soketi(
    stack: tuple[RelayProcess, int], node: PusherAgent
) -> None:
    relay, soketi_port = stack
    check_recovery(relay, node, "news-soketi-recovery", ws_port=soketi_port)


def test_an_encrypted_channel_granted_history_keeps_none_on_pusher(
    stack: tuple[RelayProcess, int],
) -> None:
    relay, _ = stack
    answer = httpx.post(
        relay.base + "/v1/events",
        json={"name": "e", "channel": "private-encrypted-room", "data": {"secret": 1}},
        headers={"X-API-Key": API_KEY},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    response = _messages(relay, "private-encrypted-room")
    assert response.status_code == 501
    assert response.json()["type"] == PROBLEM + "encrypted-channel-history"
