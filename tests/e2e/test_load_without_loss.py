"""Load without loss: N concurrent publishers x M messages through `relay serve`'s /v1/events.

Each publisher sends its messages one after another (the next once the previous was answered), all
publishers at once. Two pusher-js subscribers on the channel must receive exactly the accepted
set, each message once, and every publisher's messages in the order it sent them. Run on the
embedded local provider (pusher-js on the relay's own WebSocket) and on the pusher provider
(pusher-js on soketi, the relay publishing through soketi's HTTP API).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.e2e.conftest import API_KEY, APP_KEY, RELAY_ENV
from tests.e2e.harness import PusherAgent, RelayProcess, agent
from tests.e2e.soketi import SoketiProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.e2e.harness import Observation

pytestmark = pytest.mark.e2e

PUBLISHERS = 8
MESSAGES = 50
SUBSCRIBERS = ("s1", "s2")
CHANNEL = "load-feed"
PUSHER_APP_ID = "990099"
PUSHER_KEY = "load-e2e-key"
PUSHER_SECRET = "load-e2e-secret-0123456789abcdef"

Message = tuple[int, int]  # (publisher, sequence)


@pytest.fixture(scope="module")
def soketi_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RelayProcess, int]]:
    """A relay on the pusher provider and the soketi it publishes to; yields (relay, ws port)."""
    folder = tmp_path_factory.mktemp("load-soketi")
    soketi = SoketiProcess(
        app_id=PUSHER_APP_ID, key=PUSHER_KEY, secret=PUSHER_SECRET, log_path=folder / "soketi.log"
    )
    try:
        env = {k: v for k, v in RELAY_ENV.items() if not k.startswith("RELAY_APP_")}
        env.update(
            RELAY_PROVIDER="pusher",
            PUSHER_APP_ID=PUSHER_APP_ID,
            PUSHER_KEY=PUSHER_KEY,
            PUSHER_SECRET=PUSHER_SECRET,
            PUSHER_HOST="127.0.0.1",
            PUSHER_PORT=str(soketi.port),
            PUSHER_USE_TLS="false",
        )
        relay = RelayProcess(env, folder / "relay.log")
        try:
            yield relay, soketi.port
        finally:
            relay.stop()
    finally:
        soketi.stop()


async def publish_all(base: str) -> tuple[list[Message], Counter[int]]:
    """Every publisher's messages, concurrently; return the accepted ones and the statuses."""
    accepted: list[Message] = []
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=PUBLISHERS)
    headers = {"X-API-Key": API_KEY}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=15) as c:

        async def publisher(p: int) -> None:
            for s in range(MESSAGES):
                body = {"name": "load", "channel": CHANNEL, "data": {"p": p, "s": s}}
                answer = await c.post("/v1/events", json=body)
                statuses[answer.status_code] += 1
                if answer.is_success:
                    accepted.append((p, s))

        await asyncio.gather(*(publisher(p) for p in range(PUBLISHERS)))
    return accepted, statuses


def deliveries(listener: PusherAgent, client: str, expected: int) -> list[Message]:
    """What one subscriber received: `expected` events, then anything else within 0.5 s."""

    def mine(o: Observation) -> bool:
        return bool(o["type"] == "event" and o["client"] == client and o["channel"] == CHANNEL)

    got: list[Message] = []
    while len(got) < expected:
        data = listener.expect(mine, timeout=15)["data"]
        got.append((data["p"], data["s"]))
    try:
        extra = listener.expect(mine, timeout=0.5)["data"]
    except AssertionError:
        return got
    raise AssertionError(f"{client} received more than was accepted: {extra}")


def run_load(listener: PusherAgent, base: str, ws_port: int | None) -> None:
    for client in SUBSCRIBERS:
        listener.connect(client, ws_port=ws_port)
        assert listener.subscribe(client, CHANNEL)["type"] == "subscribed"
    started = time.monotonic()
    accepted, statuses = asyncio.run(publish_all(base))
    published = time.monotonic() - started
    total = PUBLISHERS * MESSAGES
    assert statuses == Counter({200: total}), statuses  # no loss at the door either
    for client in SUBSCRIBERS:
        got = deliveries(listener, client, len(accepted))
        assert Counter(got) == Counter(accepted), client
        per_publisher: dict[int, list[int]] = defaultdict(list)
        for p, s in got:
            per_publisher[p].append(s)
        for p in range(PUBLISHERS):
            assert per_publisher[p] == list(range(MESSAGES)), (client, p, per_publisher[p])
    elapsed = time.monotonic() - started
    print(f"{total} publishes in {published:.2f} s; all delivered to {len(SUBSCRIBERS)} "
          f"subscribers in {elapsed:.2f} s")  # fmt: skip


def test_local_provider_delivers_exactly_the_accepted_set_in_order(relay: RelayProcess) -> None:
    with agent(relay, APP_KEY) as listener:
        run_load(listener, relay.base, ws_port=None)


def test_soketi_delivers_exactly_the_accepted_set_in_order(
    soketi_stack: tuple[RelayProcess, int],
) -> None:
    relay, ws_port = soketi_stack
    with agent(relay, PUSHER_KEY) as listener:
        run_load(listener, relay.base, ws_port=ws_port)
