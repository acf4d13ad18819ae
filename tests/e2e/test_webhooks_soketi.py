"""Provider webhooks forwarded: soketi (a Pusher-protocol server) posts its webhooks to the relay's
/v1/webhooks/pusher, which verifies them under PUSHER_SECRET and forwards the events to the app's
backend, signed under RELAY_APP_SECRET: the backend verifies them with the Pusher SDK as it would
Pusher's own, whichever provider is behind the relay."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import APP_KEY, APP_SECRET, RELAY_ENV
from tests.e2e.harness import RelayProcess, free_port
from tests.e2e.soketi import SoketiProcess
from tests.e2e.test_pusher_soketi import (
    PUSHER_APP_ID,
    PUSHER_KEY,
    PUSHER_SECRET,
    WEBHOOK_PATH,
    SoketiAgent,
)
from tests.e2e.test_webhooks import POLICY, on, token, wait_on
from tests.unit.core.webhooks.receiver import Receiver, ReceiverThread

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e


def test_soketis_webhooks_reach_the_backend_signed_by_the_relay(tmp_path: Path) -> None:
    receiver = Receiver(app_key=APP_KEY, app_secret=APP_SECRET)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    soketi_port = free_port()
    with ReceiverThread(receiver) as url:
        env = {
            **RELAY_ENV,
            "RELAY_PROVIDER": "pusher",
            "RELAY_POLICY_FILE": str(policy),
            "PUSHER_APP_ID": PUSHER_APP_ID,
            "PUSHER_KEY": PUSHER_KEY,
            "PUSHER_SECRET": PUSHER_SECRET,
            "PUSHER_HOST": "127.0.0.1",
            "PUSHER_PORT": str(soketi_port),
            "PUSHER_USE_TLS": "false",
            "RELAY_WEBHOOK_URL": url,
            "RELAY_WEBHOOK_HOLD_SECONDS": "1",
        }
        relay = RelayProcess(env, tmp_path / "relay.log")
        soketi = None
        agent = None
        try:
            soketi = SoketiProcess(
                app_id=PUSHER_APP_ID,
                key=PUSHER_KEY,
                secret=PUSHER_SECRET,
                port=soketi_port,
                log_path=tmp_path / "soketi.log",
                webhook_url=relay.base + WEBHOOK_PATH,
                webhook_batching_ms=50,
            )
            agent = SoketiAgent(relay, soketi)
            channel = "presence-chat-soketi"
            agent.connect("ann", token("ann"))
            assert agent.subscribe("ann", channel)["type"] == "subscribed"
            agent.connect("bob", token("bob"))
            assert agent.subscribe("bob", channel)["type"] == "subscribed"
            agent.send(op="trigger", client="bob", channel=channel, event="client-hi", data={})
            assert wait_on(receiver, channel, 4, within=15) == [
                ("channel_occupied", None),
                ("member_added", "ann"),
                ("member_added", "bob"),
                ("client_event", "bob"),
            ]
            agent.send(op="disconnect", client="bob")
            agent.send(op="disconnect", client="ann")
            found = wait_on(receiver, channel, 7, within=15)
            # in soketi's order (it sends channel_vacated before the last member_removed)
            assert sorted(found[4:7], key=str) == sorted(
                [("member_removed", "ann"), ("member_removed", "bob"), ("channel_vacated", None)],
                key=str,
            )
            time.sleep(0.5)
            assert len(on(receiver, channel)) == 7  # once each
        finally:
            if agent is not None:
                agent.close()
            if soketi is not None:
                soketi.stop()
            relay.stop()
    assert receiver.refused == []
    assert PUSHER_SECRET not in relay.log()
