"""pusher-js (Node) against `relay serve` on the local provider: the Pusher features of issue 14
that live in the protocol session, each seen by the official client the way an app binds it.

Cache channels (`pusher:cache_miss`, the last event on subscribe), subscription counts
(`pusher:subscription_count`, with RELAY_SUBSCRIPTION_COUNT_EVENTS on as Pusher's app setting
is), and sign-in watchlists (`pusher.user.watchlist`, the ids from the token's `watchlist`
claim). The same session serves API Gateway; tests/conformance runs the frames on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from core.settings import Settings
from core.tokens import mint_dev_token
from tests.e2e.conftest import API_KEY, APP_KEY, JWT_SECRET, RELAY_ENV
from tests.e2e.harness import RelayProcess, agent

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.e2e.harness import Observation, PusherAgent

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def counting_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """The default relay with subscription counts turned on."""
    env = {**RELAY_ENV, "RELAY_SUBSCRIPTION_COUNT_EVENTS": "true"}
    process = RelayProcess(env, tmp_path_factory.mktemp("parity") / "relay.log")
    yield process
    process.stop()


@pytest.fixture
def clients(counting_relay: RelayProcess) -> Iterator[PusherAgent]:
    with agent(counting_relay, APP_KEY) as a:
        yield a


def token(user_id: str, watchlist: tuple[str, ...] = ()) -> str:
    settings = Settings(jwt_secret=JWT_SECRET, api_keys=API_KEY)
    return mint_dev_token(settings, user_id=user_id, watchlist=watchlist)


def publish(relay: RelayProcess, channel: str, event: str, data: Any) -> None:
    body = {"name": event, "channel": channel, "data": data}
    answer = httpx.post(relay.base + "/v1/events", json=body, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 200, answer.text


def bound(client: str, channel: str, event: str) -> Any:
    return lambda o: (
        o["type"] == "bound"
        and o["client"] == client
        and o["channel"] == channel
        and o["event"] == event
    )


def watch(client: str, name: str) -> Any:
    return lambda o: o["type"] == "watchlist" and o["client"] == client and o["name"] == name


def test_a_cache_channel_misses_then_hands_its_last_event_to_late_subscribers(
    counting_relay: RelayProcess, clients: PusherAgent
) -> None:
    clients.connect("a")
    clients.send(op="subscribe", client="a", channel="cache-scores", bind=["pusher:cache_miss"])
    clients.expect(bound("a", "cache-scores", "pusher:cache_miss"))
    publish(counting_relay, "cache-scores", "goal", {"home": 1})
    publish(counting_relay, "cache-scores", "goal", {"home": 2})
    clients.connect("late")
    clients.send(op="subscribe", client="late", channel="cache-scores")
    got = clients.expect(
        lambda o: o["type"] == "event" and o["client"] == "late" and o["event"] == "goal"
    )
    assert got["data"] == {"home": 2}  # the last one only
    clients.never(
        lambda o: o["type"] == "event" and o["client"] == "late" and o["event"] == "goal", wait=0.5
    )


def test_subscribers_hear_the_count_change_as_pusher_js_binds_it(clients: PusherAgent) -> None:
    clients.connect("a")
    clients.send(op="subscribe", client="a", channel="lobby", bind=["pusher:subscription_count"])
    assert clients.expect(bound("a", "lobby", "pusher:subscription_count"))["data"] == {
        "subscription_count": 1
    }
    clients.connect("b")
    clients.subscribe("b", "lobby")
    counted = clients.expect(bound("a", "lobby", "pusher:subscription_count"))
    assert counted["data"] == {"subscription_count": 2}
    clients.send(op="disconnect", client="b")
    counted = clients.expect(bound("a", "lobby", "pusher:subscription_count"))
    assert counted["data"] == {"subscription_count": 1}


def test_a_watchlist_hears_its_users_come_online_and_go_offline(clients: PusherAgent) -> None:
    clients.connect("bob", token=token("bob"))
    clients.send(op="signin", client="bob")
    clients.expect(lambda o: o["type"] == "signed_in" and o["client"] == "bob")

    clients.connect("ann", token=token("ann", watchlist=("bob", "cid")))
    clients.send(op="watch", client="ann")
    clients.send(op="signin", client="ann")
    online: Observation = clients.expect(watch("ann", "online"))
    assert online["user_ids"] == ["bob"]  # who is online already

    clients.connect("cid", token=token("cid"))
    clients.send(op="signin", client="cid")
    assert clients.expect(watch("ann", "online"))["user_ids"] == ["cid"]

    clients.send(op="disconnect", client="bob")
    assert clients.expect(watch("ann", "offline"))["user_ids"] == ["bob"]
