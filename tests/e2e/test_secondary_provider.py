"""A secondary provider end to end: `relay serve` with soketi as the primary (the pusher
provider) and its own local provider as the secondary (RELAY_SECONDARY_PROVIDER=local), the
migration docs/migrating.md describes. pusher-js clients on both: one connected to soketi whose
private channel the relay signs as Pusher (the default signer), one connected to the relay whose
private channel it signs as itself (`?provider=local`). soketi is stopped mid-test: every publish
answered 2xx reached one of them, and the clients on the secondary keep receiving (issue 17)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from core.settings import Settings
from core.tokens import mint_dev_token
from tests.e2e.conftest import API_KEY, APP_ID, APP_KEY, APP_SECRET, JWT_SECRET
from tests.e2e.harness import PusherAgent, RelayProcess
from tests.e2e.soketi import SoketiProcess, pusher_relay_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.e2e.harness import Observation

pytestmark = pytest.mark.e2e

PUSHER_APP_ID = "660066"
PUSHER_KEY = "secondary-e2e-key"
PUSHER_SECRET = "secondary-e2e-secret-0123456789abcdef"
CHANNEL = "private-migrating"
PROBLEM = "urn:realtime-relay:problem:"


def start_stack(folder: Path, mode: str) -> tuple[SoketiProcess, RelayProcess]:
    soketi = SoketiProcess(
        app_id=PUSHER_APP_ID, key=PUSHER_KEY, secret=PUSHER_SECRET, log_path=folder / "soketi.log"
    )
    env = pusher_relay_env(
        soketi.port,
        app_id=PUSHER_APP_ID,
        key=PUSHER_KEY,
        secret=PUSHER_SECRET,
        PUSHER_MAX_ATTEMPTS="1",
        PUSHER_TIMEOUT_SECONDS="2",
        RELAY_APP_ID=APP_ID,
        RELAY_APP_KEY=APP_KEY,
        RELAY_APP_SECRET=APP_SECRET,
        RELAY_SECONDARY_PROVIDER="local",
        RELAY_SECONDARY_MODE=mode,
        RELAY_BREAKER_FAILURES="2",
        RELAY_BREAKER_COOLDOWN_SECONDS="1",
        RELAY_RATE_LIMITS="false",
    )
    try:
        relay = RelayProcess(env, folder / "relay.log")
    except BaseException:
        soketi.stop()
        raise
    return soketi, relay


@pytest.fixture(scope="module", params=["mirror", "failover"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, SoketiProcess, RelayProcess]]:
    mode = request.param
    soketi, relay = start_stack(tmp_path_factory.mktemp(f"secondary-{mode}"), mode)
    try:
        yield mode, soketi, relay
    finally:
        try:
            relay.stop()
        finally:
            soketi.stop()


def user_token(user_id: str) -> str:
    return mint_dev_token(Settings(jwt_secret=JWT_SECRET), user_id=user_id)


@pytest.fixture
def clients(
    stack: tuple[str, SoketiProcess, RelayProcess],
) -> Iterator[tuple[PusherAgent, PusherAgent]]:
    """pusher-js on soketi (the Pusher app's key), and pusher-js on the relay (its own key),
    each subscribed to the same private channel, signed by the provider it is connected to."""
    _, soketi, relay = stack
    on_primary = PusherAgent(relay, PUSHER_KEY)
    on_secondary = PusherAgent(relay, APP_KEY)
    try:
        on_primary.connect("p", user_token("ann"), ws_port=soketi.port)
        on_secondary.send(  # as PusherAgent.connect, its auth endpoints naming the signer
            op="connect",
            client="s",
            key=APP_KEY,
            host="127.0.0.1",
            port=relay.port,
            base=relay.base,
            token=user_token("bob"),
            authQuery="?provider=local",
        )
        on_secondary.expect(lambda o: o.get("client") == "s" and o.get("state") == "connected")
        assert on_primary.subscribe("p", CHANNEL)["type"] == "subscribed"
        assert on_secondary.subscribe("s", CHANNEL)["type"] == "subscribed"
        yield on_primary, on_secondary
    finally:
        on_primary.close()
        on_secondary.close()


def publish(relay: RelayProcess, n: int) -> httpx.Response:
    return httpx.post(
        relay.base + "/v1/events",
        json={"name": "n", "channel": CHANNEL, "data": {"n": n}},
        headers={"X-API-Key": API_KEY, "Idempotency-Key": f"secondary-{n}-{time.time_ns()}"},
        timeout=10,
    )


def heard(agent: PusherAgent, client: str, count: int, *, settle: float = 0.5) -> list[int]:
    """The `n` of the events the client received: `count` of them, then any more within
    `settle` seconds."""

    def is_event(o: Observation) -> bool:
        return bool(o.get("client") == client and o["type"] == "event" and o["event"] == "n")

    got = [agent.expect(is_event)["data"]["n"] for _ in range(count)]
    deadline = time.monotonic() + settle
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(agent.expect(is_event, timeout=left)["data"]["n"])
        except AssertionError:
            break
    return got


def test_a_migration_survives_the_primary_stopping(
    stack: tuple[str, SoketiProcess, RelayProcess], clients: tuple[PusherAgent, PusherAgent]
) -> None:
    mode, soketi, relay = stack
    on_primary, on_secondary = clients
    answers: dict[int, dict[str, Any]] = {}
    for n in range(3):
        answer = publish(relay, n)
        assert answer.status_code == 200, answer.text
        answers[n] = answer.json()
        assert answers[n]["provider"] == "pusher"
    assert heard(on_primary, "p", 3) == [0, 1, 2]
    if mode == "mirror":  # both providers' clients get every publish
        assert heard(on_secondary, "s", 3) == [0, 1, 2]
        assert answers[0]["providers"] == {"pusher": {"accepted": 1}, "local": {"accepted": 1}}
    else:  # failover: the primary only, while it is up
        assert heard(on_secondary, "s", 0) == []

    soketi.stop()
    for n in range(3, 9):
        answer = publish(relay, n)
        assert answer.status_code == 200, answer.text  # the secondary took it
        body = answer.json()
        assert body["provider"] == "local"
        assert body["providers"]["local"] == {"accepted": 1}
        if mode == "mirror":
            assert body["providers"]["pusher"]["failed"].startswith("provider-")
    assert heard(on_secondary, "s", 6) == list(range(3, 9))
    health = httpx.get(relay.base + "/health", timeout=5).json()
    assert health["circuits"]["pusher"] == "open"
    assert health["circuits"]["local"] == "closed"

    soketi.start()
    time.sleep(1.2)  # the primary's breaker cooldown: the next publish probes it
    back = publish(relay, 9)
    assert back.status_code == 200, back.text
    assert back.json()["providers"]["pusher"] == {"accepted": 1}
    assert httpx.get(relay.base + "/health", timeout=5).json()["circuits"]["pusher"] == "closed"
    if mode == "failover":  # back on the primary: the secondary's clients hear no more
        assert back.json()["provider"] == "pusher"
        on_secondary.never(lambda o: o.get("client") == "s" and o["type"] == "event", wait=0.5)
    else:
        assert heard(on_secondary, "s", 1) == [9]


def test_each_client_gets_its_own_providers_signature(
    stack: tuple[str, SoketiProcess, RelayProcess],
) -> None:
    _, _, relay = stack
    headers = {"Authorization": f"Bearer {user_token('ann')}"}
    form = {"socket_id": "123.456", "channel_name": CHANNEL}
    default = httpx.post(relay.base + "/auth/channel", data=form, headers=headers, timeout=5)
    own = httpx.post(
        relay.base + "/auth/channel?provider=local", data=form, headers=headers, timeout=5
    )
    assert default.json()["auth"].startswith(PUSHER_KEY + ":")
    assert own.json()["auth"].startswith(APP_KEY + ":")
    unknown = httpx.post(
        relay.base + "/auth/channel?provider=ably", data=form, headers=headers, timeout=5
    )
    assert unknown.status_code == 400
    assert unknown.json()["type"] == PROBLEM + "invalid-request"
