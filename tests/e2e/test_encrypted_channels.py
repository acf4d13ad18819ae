"""Encrypted channels (`private-encrypted-`) on the local provider, end to end: pusher-js (Node,
whose build bundles tweetnacl) subscribes through `/auth/channel` and decrypts what the relay seals
on `/v1/events`, and what the official Python SDK (pusher 3.3) seals itself before it calls the
relay's Pusher HTTP API, which the relay forwards as it is (sealed once, never twice)."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import httpx
import nacl.secret
import pusher
import pusher.errors
import pytest
from pusher.http import Request
from websockets.sync.client import connect as ws_connect

from providers.pusherproto.encryption import shared_secret
from tests.e2e.conftest import APP_ID, APP_KEY, APP_SECRET, RELAY_ENV
from tests.e2e.harness import RelayProcess, agent
from tests.e2e.test_local_pusher_js import event_on, publish, token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.e2e.harness import PusherAgent

pytestmark = pytest.mark.e2e

MASTER_KEY = bytes(range(200, 232))
MASTER_KEY_BASE64 = base64.b64encode(MASTER_KEY).decode()
PROBLEM = "urn:realtime-relay:problem:"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """`relay serve` on the local provider with RELAY_ENCRYPTION_MASTER_KEY_BASE64 set."""
    env = {**RELAY_ENV, "RELAY_ENCRYPTION_MASTER_KEY_BASE64": MASTER_KEY_BASE64}
    process = RelayProcess(env, tmp_path_factory.mktemp("encrypted") / "relay.log")
    yield process
    process.stop()


@pytest.fixture
def clients(relay: RelayProcess) -> Iterator[PusherAgent]:
    with agent(relay, APP_KEY) as a:
        yield a


def sdk(relay: RelayProcess, master: str | None = MASTER_KEY_BASE64) -> pusher.Pusher:
    """The official Python SDK pointed at the relay's Pusher HTTP API."""
    return pusher.Pusher(
        app_id=APP_ID,
        key=APP_KEY,
        secret=APP_SECRET,
        host="127.0.0.1",
        port=relay.port,
        ssl=False,
        encryption_master_key_base64=master,
    )


def opened(channel: str, sealed: str) -> Any:
    """The sealed data opened with the channel's key (as pusher-js does), parsed."""
    envelope = json.loads(sealed)
    box = nacl.secret.SecretBox(shared_secret(channel, MASTER_KEY))
    plain = box.decrypt(
        base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"])
    )
    return json.loads(plain)


class RawSocket:
    """A bare protocol-7 socket: what travels on the wire, before any client decrypts it."""

    def __init__(self, relay: RelayProcess) -> None:
        self.relay = relay
        self.ws = ws_connect(f"ws://127.0.0.1:{relay.port}/app/{APP_KEY}?protocol=7")
        established = self.frame()
        assert established["event"] == "pusher:connection_established"
        self.socket_id = json.loads(established["data"])["socket_id"]

    def frame(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.ws.recv(timeout=5))
        return found

    def subscribe(self, channel: str, user: str) -> dict[str, str]:
        answer = httpx.post(
            self.relay.base + "/auth/channel",
            data={"socket_id": self.socket_id, "channel_name": channel},
            headers={"Authorization": f"Bearer {token(user)}"},
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        auth: dict[str, str] = answer.json()
        self.ws.send(
            json.dumps({"event": "pusher:subscribe", "data": {"channel": channel, **auth}})
        )
        self.next_event("pusher_internal:subscription_succeeded")
        return auth

    def next_event(self, name: str) -> dict[str, Any]:
        while (got := self.frame())["event"] != name:
            pass
        return got


def test_v1_events_are_sealed_on_the_wire_and_decrypted_by_pusher_js(
    relay: RelayProcess, clients: PusherAgent
) -> None:
    channel = "private-encrypted-vault"
    clients.connect("alice", token=token("alice"))
    assert clients.subscribe("alice", channel)["type"] == "subscribed"
    wire = RawSocket(relay)
    auth = wire.subscribe(channel, "bob")
    assert base64.b64decode(auth["shared_secret"]) == shared_secret(channel, MASTER_KEY)

    secret = {"card": "4111 1111 1111 1111", "note": "naïve ☃"}
    response = publish(relay, {"name": "sealed", "channel": channel, "data": secret})
    assert response.status_code == 200, response.text
    assert clients.expect(event_on("alice", channel, "sealed"))["data"] == secret

    frame = wire.next_event("sealed")
    assert "4111" not in frame["data"]
    assert opened(channel, frame["data"]) == secret  # sealed once: the published data inside
    wire.ws.close()


def test_the_python_sdks_sealed_trigger_is_forwarded_as_sealed(
    relay: RelayProcess, clients: PusherAgent
) -> None:
    channel = "private-encrypted-sdk"
    clients.connect("carol", token=token("carol"))
    assert clients.subscribe("carol", channel)["type"] == "subscribed"
    wire = RawSocket(relay)
    wire.subscribe(channel, "dan")

    assert sdk(relay).trigger(channel, "from-sdk", {"n": 1}) == {}
    assert clients.expect(event_on("carol", channel, "from-sdk"))["data"] == {"n": 1}
    sealed = wire.next_event("from-sdk")["data"]
    assert opened(channel, sealed) == {"n": 1}  # not a second envelope inside the first

    # batch_events: each event sealed by the SDK, forwarded as sealed too.
    sdk(relay).trigger_batch([{"channel": channel, "name": "batched", "data": "plain text"}])
    assert clients.expect(event_on("carol", channel, "batched"))["data"] == "plain text"
    wire.ws.close()


def test_an_sdk_with_another_master_key_is_refused(relay: RelayProcess) -> None:
    other = base64.b64encode(bytes(32)).decode()
    with pytest.raises(pusher.errors.PusherBadRequest, match="sealed with another key"):
        sdk(relay, other).trigger("private-encrypted-vault", "wrong", {"n": 2})


def test_an_event_for_an_encrypted_and_other_channels_is_refused_on_both_paths(
    relay: RelayProcess, clients: PusherAgent
) -> None:
    clients.connect("erin", token=token("erin"))
    assert clients.subscribe("erin", "private-encrypted-mixed")["type"] == "subscribed"
    channels = ["news", "private-encrypted-mixed"]
    refused = publish(relay, {"name": "mixed", "channels": channels, "data": "x"})
    assert refused.status_code == 400
    problem = refused.json()
    assert problem["type"] == PROBLEM + "encrypted-multi-channel"
    assert "multiple channels" in problem["detail"]
    assert problem["channel"] == "private-encrypted-mixed"

    # The SDKs refuse it themselves; a hand-made Pusher HTTP API call is refused by the relay.
    with pytest.raises(ValueError, match="multiple channels"):
        sdk(relay).trigger(channels, "mixed", "x")
    client = sdk(relay)._pusher_client
    body = {"name": "mixed", "channels": channels, "data": "x"}
    with pytest.raises(pusher.errors.PusherBadRequest, match="multiple channels"):
        client.http.send_request(Request(client, "POST", f"/apps/{APP_ID}/events", body))
    clients.never(event_on("erin", "private-encrypted-mixed", "mixed"), wait=0.5)


def test_client_events_on_an_encrypted_channel_are_refused_by_the_session(
    relay: RelayProcess,
) -> None:
    # pusher-js refuses them before sending (UnsupportedFeature); a raw client gets pusher:error.
    wire = RawSocket(relay)
    channel = "private-encrypted-whisper"
    wire.subscribe(channel, "fay")
    wire.ws.send(json.dumps({"event": "client-typing", "channel": channel, "data": {}}))
    error = wire.next_event("pusher:error")
    assert "only for private and presence channels" in error["data"]["message"]
    wire.ws.close()


def test_the_master_key_never_reaches_the_log(relay: RelayProcess) -> None:
    assert publish(relay, {"name": "x", "channel": "private-encrypted-log", "data": "y"}).is_success
    assert MASTER_KEY_BASE64 not in relay.log()


def test_without_a_master_key_the_refusal_names_the_variable(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    plain = RelayProcess(RELAY_ENV, tmp_path_factory.mktemp("plain") / "relay.log")
    try:
        refused = httpx.post(
            plain.base + "/auth/channel",
            data={"socket_id": "1.2", "channel_name": "private-encrypted-vault"},
            headers={"Authorization": f"Bearer {token('alice')}"},
            timeout=5,
        )
        published = publish(plain, {"name": "x", "channel": "private-encrypted-vault", "data": 1})
    finally:
        plain.stop()
    for response in (refused, published):
        assert response.status_code == 400
        assert "RELAY_ENCRYPTION_MASTER_KEY_BASE64" in response.json()["detail"]
