"""The whole Pusher HTTP API against `relay serve` (local), called by the official server SDKs:
the Node SDK (`pusher` 5.3, tests/e2e/js/sdk_pusher.mjs) and the Python SDK (`pusher` 3.3), with
pusher-js clients (tests/e2e/js/user_agent.mjs) on the receiving end.

The Python SDK's `trigger` takes no `info` (3.3 has no such argument): its info is checked through
`trigger_batch`, whose events pass `info` on. Its app ids are digits only, so the `app-id` relay
is called by the Node SDK alone.
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

import pusher
import pytest

from core.settings import Settings
from core.tokens import mint_dev_token
from tests.e2e.conftest import API_KEY, APP_ID, APP_KEY, APP_SECRET, JWT_SECRET, RELAY_ENV
from tests.e2e.harness import ROOT, PusherAgent, RelayProcess

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.e2e.harness import Observation

pytestmark = pytest.mark.e2e

SDK_SCRIPT = ROOT / "tests" / "e2e" / "js" / "sdk_pusher.mjs"
USER_AGENT = ROOT / "tests" / "e2e" / "js" / "user_agent.mjs"
SDKS = ["node", "python"]


@pytest.fixture
def users(relay: RelayProcess) -> Iterator[PusherAgent]:
    """pusher-js clients (with user events) against the default relay."""
    agent = PusherAgent(relay, APP_KEY, script=USER_AGENT)
    try:
        yield agent
    finally:
        agent.close()


def token(user_id: str) -> str:
    """A JWT the relay accepts."""
    return mint_dev_token(Settings(jwt_secret=JWT_SECRET, api_keys=API_KEY), user_id=user_id)


def node_sdk(relay: RelayProcess, op: str, *args: Any, app_id: str = APP_ID) -> dict[str, Any]:
    """One call of the Node SDK: {status, body} (or {status, error} when it raised)."""
    config = {"appId": app_id, "key": APP_KEY, "secret": APP_SECRET, "host": "127.0.0.1",
              "port": relay.port}  # fmt: skip
    command = json.dumps({"config": config, "op": op, "args": list(args)})
    done = subprocess.run(
        ["node", str(SDK_SCRIPT), command], cwd=ROOT, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def python_sdk(relay: RelayProcess) -> pusher.Pusher:
    """The Python SDK pointed at the relay."""
    return pusher.Pusher(app_id=APP_ID, key=APP_KEY, secret=APP_SECRET, host="127.0.0.1",
                         port=relay.port, ssl=False)  # fmt: skip


def ok(answer: dict[str, Any]) -> Any:
    """The body of a Node SDK call that succeeded."""
    assert answer["status"] == 200, answer
    return answer["body"]


def event_on(client: str, channel: str, event: str) -> Any:
    """Matcher for one event on one channel at one client."""
    return lambda o: (
        o["type"] == "event" and o["client"] == client and o["channel"] == channel
        and o["event"] == event
    )  # fmt: skip


def signed_in(client: str) -> Callable[[Observation], bool]:
    """Matcher for a client's pusher:signin_success."""
    return lambda o: o["type"] == "signed_in" and o["client"] == client


def user_ready(socket_id: str) -> Callable[[Observation], bool]:
    """Matcher for a signed-in socket whose #server-to-user- channel is subscribed: events sent
    to its user reach it from then on (pusher-js subscribes after pusher:signin_success)."""
    return lambda o: o["type"] == "user_ready" and o["socket_id"] == socket_id


# -- publishing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sdk", SDKS)
def test_trigger_with_info(relay: RelayProcess, users: PusherAgent, sdk: str) -> None:
    channel = f"sdk-trigger-{sdk}"
    users.connect("ann")
    users.subscribe("ann", channel)
    if sdk == "node":
        params = {"info": "subscription_count"}
        body = ok(node_sdk(relay, "trigger", [channel, "quiet"], "news", {"n": 1}, params))
        assert body == {
            "channels": {channel: {"subscription_count": 1}, "quiet": {"subscription_count": 0}}
        }
        plain = ok(node_sdk(relay, "trigger", channel, "plain", "x"))
        assert plain == {}
    else:
        assert python_sdk(relay).trigger([channel, "quiet"], "news", {"n": 1}) == {}
    got = users.expect(event_on("ann", channel, "news"))
    assert got["data"] == {"n": 1}


@pytest.mark.parametrize("sdk", SDKS)
def test_trigger_batch_with_info(relay: RelayProcess, users: PusherAgent, sdk: str) -> None:
    channel = f"sdk-batch-{sdk}"
    users.connect("ann")
    users.subscribe("ann", channel)
    batch = [
        {"channel": channel, "name": "one", "data": {"n": 1}, "info": "subscription_count"},
        {"channel": f"{channel}-empty", "name": "two", "data": "2"},
    ]
    if sdk == "node":
        body = ok(node_sdk(relay, "triggerBatch", batch))
    else:
        body = python_sdk(relay).trigger_batch(batch)
    assert body == {"batch": [{"subscription_count": 1}, {}]}
    assert users.expect(event_on("ann", channel, "one"))["data"] == {"n": 1}


# -- queries ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sdk", SDKS)
def test_channel_queries(relay: RelayProcess, users: PusherAgent, sdk: str) -> None:
    channel = f"presence-sdk-{sdk}"
    for client in ("ann", "ann-2", "bob"):
        users.connect(client, token(client.removesuffix("-2")))
        assert users.subscribe(client, channel)["type"] == "subscribed"
    prefix = f"presence-sdk-{sdk}"
    if sdk == "node":
        params = {"filter_by_prefix": prefix, "info": "user_count"}
        listed = ok(node_sdk(relay, "get", {"path": "/channels", "params": params}))
        info_params = {"info": "user_count,subscription_count"}
        info = ok(node_sdk(relay, "get", {"path": f"/channels/{channel}", "params": info_params}))
        members = ok(node_sdk(relay, "get", {"path": f"/channels/{channel}/users"}))
        refused = node_sdk(relay, "get", {"path": "/channels", "params": {"info": "user_count"}})
        assert refused["status"] == 400, refused
        assert refused["body"]["type"] == "urn:realtime-relay:problem:invalid-request"
    else:
        client = python_sdk(relay)
        listed = client.channels_info(prefix_filter=prefix, attributes=["user_count"])
        info = client.channel_info(channel, ["user_count", "subscription_count"])
        members = client.users_info(channel)
        with pytest.raises(pusher.errors.PusherBadRequest):
            client.channels_info(attributes=["user_count"])
    assert listed == {"channels": {channel: {"user_count": 2}}}
    assert info == {"occupied": True, "user_count": 2, "subscription_count": 3}
    assert sorted(u["id"] for u in members["users"]) == ["ann", "bob"]


# -- users --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sdk", SDKS)
def test_send_to_user_and_terminate_its_connections(
    relay: RelayProcess, users: PusherAgent, sdk: str
) -> None:
    user = f"sdk-user-{sdk}"
    socket_id = users.connect("ann", token(user))
    users.connect("bob", token("someone-else"))
    users.send(op="signin", client="ann")
    users.send(op="signin", client="bob")
    for client in ("ann", "bob"):
        users.expect(signed_in(client))
    users.expect(user_ready(socket_id))
    if sdk == "node":
        ok(node_sdk(relay, "sendToUser", user, "notice", {"msg": "hi"}))
    else:
        assert python_sdk(relay).send_to_user(user, "notice", {"msg": "hi"}) == {}
    got = users.expect(lambda o: o["type"] == "user_event" and o["event"] == "notice")
    assert (got["socket_id"], got["data"]) == (socket_id, {"msg": "hi"})

    if sdk == "node":
        ok(node_sdk(relay, "terminateUserConnections", user))
    else:
        assert python_sdk(relay).terminate_user_connections(user) == {}
    users.expect(lambda o: o["type"] == "state" and o["client"] == "ann"
                 and o["state"] != "connected")  # fmt: skip
    users.never(lambda o: o["type"] == "state" and o["client"] == "bob"
                and o["state"] != "connected", wait=0.5)  # fmt: skip


# -- app ids as soketi takes them -------------------------------------------------------------
@pytest.fixture(scope="module")
def named_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """A relay whose app id is `app-id`, as Laravel and soketi setups name theirs."""
    env = RELAY_ENV | {"RELAY_APP_ID": "app-id"}
    process = RelayProcess(env, tmp_path_factory.mktemp("named") / "relay.log")
    yield process
    process.stop()


def test_an_app_id_with_letters_starts_and_serves_the_node_sdk(named_relay: RelayProcess) -> None:
    answer = node_sdk(named_relay, "trigger", "news", "e", "x", app_id="app-id")
    assert ok(answer) == {}
    wrong = node_sdk(named_relay, "trigger", "news", "e", "x", app_id="4242")
    assert wrong["status"] == 404, wrong
