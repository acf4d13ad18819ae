"""Laravel Echo 2.5 (broadcaster "pusher", pusher-js 8.6) against `relay serve`, local provider.

Events are published as Laravel's PusherBroadcaster publishes them: through the official Pusher
server SDK (Python here, as the PHP one does) with the event's class name as its name. Private and
presence subscriptions are authorized either by the relay (/auth/channel with a JWT, Echo's
`bearerToken`) or as Laravel's own /broadcasting/auth does it: the Pusher SDK's `authenticate`
signed with the relay's key and secret, handed to Echo by a custom authorizer.
"""

from __future__ import annotations

import base64
import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pusher
import pytest

from tests.e2e.conftest import APP_ID, APP_KEY, APP_SECRET, RELAY_ENV
from tests.e2e.harness import ROOT, PusherAgent, RelayProcess
from tests.e2e.test_local_pusher_js import token

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.e2e.harness import Observation

pytestmark = pytest.mark.e2e

ECHO_AGENT = ROOT / "tests" / "e2e" / "js" / "echo_agent.mjs"
LARAVEL_POLICY = ROOT / "examples" / "policies" / "laravel.toml"
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
NOTIFICATION = "Illuminate\\Notifications\\Events\\BroadcastNotificationCreated"


class EchoAgent(PusherAgent):
    """Laravel Echo clients in one Node process (tests/e2e/js/echo_agent.mjs)."""

    def __init__(self, relay: RelayProcess, app_key: str) -> None:
        super().__init__(relay, app_key, script=ECHO_AGENT)

    def echo(self, client: str, token: str | None = None, *, laravel_auth: bool = False) -> str:
        """Connect an Echo client; return its socket id."""
        self.send(
            op="connect",
            client=client,
            key=self.app_key,
            host="127.0.0.1",
            port=self.relay.port,
            base=self.relay.base,
            token=token,
            laravelAuth=laravel_auth,
        )
        obs = self.expect(lambda o: o.get("client") == client and o.get("state") == "connected")
        socket_id: str = obs["socket_id"]
        return socket_id

    def open(self, client: str, kind: str, name: str) -> None:
        """Echo.channel/private/join/encryptedPrivate(name), watched (subscribed, here, ...)."""
        self.send(op="open", client=client, kind=kind, name=name)

    def bind(self, op: str, client: str, **command: Any) -> None:
        """listen, listenForWhisper or notification, bound before the test goes on."""
        self.send(op=op, client=client, **command)
        self.expect(lambda o: o["type"] == "ack" and o["client"] == client and o["op"] == op)

    def subscribed(self, client: str, channel: str) -> Observation:
        """The subscription's outcome: subscribed or subscription_error."""
        return self.expect(
            lambda o: (
                o.get("client") == client
                and o.get("channel") == channel
                and o["type"] in ("subscribed", "subscription_error")
            )
        )


def seen(client: str, kind: str, channel: str) -> Callable[[Observation], bool]:
    """Matcher for one kind of observation on one channel at one client."""
    return lambda o: o["type"] == kind and o["client"] == client and o["channel"] == channel


def laravel_broadcaster(relay: RelayProcess) -> pusher.Pusher:
    """The Pusher SDK configured as Laravel's .env configures it: the relay's id, key, secret."""
    return pusher.Pusher(
        app_id=APP_ID, key=APP_KEY, secret=APP_SECRET, host="127.0.0.1", port=relay.port, ssl=False
    )


@pytest.fixture(scope="module")
def laravel_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """`relay serve` with examples/policies/laravel.toml."""
    folder = tmp_path_factory.mktemp("laravel")
    env = {**RELAY_ENV, "RELAY_POLICY_FILE": str(LARAVEL_POLICY)}
    process = RelayProcess(env, folder / "relay.log")
    yield process
    process.stop()


@contextmanager
def echo_agent(relay: RelayProcess) -> Iterator[EchoAgent]:
    """An EchoAgent that is stopped afterwards."""
    a = EchoAgent(relay, APP_KEY)
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def echo(relay: RelayProcess) -> Iterator[EchoAgent]:
    """Echo clients against the relay with the built-in policy."""
    with echo_agent(relay) as a:
        yield a


@pytest.fixture
def laravel_echo(laravel_relay: RelayProcess) -> Iterator[EchoAgent]:
    """Echo clients against the relay with the Laravel example policy."""
    with echo_agent(laravel_relay) as a:
        yield a


def test_channel_listen_by_full_name_and_by_laravels_namespace(
    relay: RelayProcess, echo: EchoAgent
) -> None:
    echo.echo("a")
    echo.open("a", "channel", "orders")
    assert echo.subscribed("a", "orders")["type"] == "subscribed"
    echo.bind("listen", client="a", kind="channel", name="orders", event=".OrderShipped")
    echo.bind("listen", client="a", kind="channel", name="orders", event="OrderShipped")
    broadcaster = laravel_broadcaster(relay)
    # `listen('.OrderShipped')` takes the name as broadcastAs() gives it; `listen('OrderShipped')`
    # the class name in Echo's default namespace, as Laravel broadcasts an event without one.
    broadcaster.trigger(["orders"], "OrderShipped", {"order": {"id": 1}})
    broadcaster.trigger(["orders"], "App\\Events\\OrderShipped", {"order": {"id": 2}})
    first = echo.expect(seen("a", "event", "orders"))
    second = echo.expect(seen("a", "event", "orders"))
    assert (first["listened"], first["data"]) == (".OrderShipped", {"order": {"id": 1}})
    assert (second["listened"], second["data"]) == ("OrderShipped", {"order": {"id": 2}})
    echo.never(seen("a", "event", "orders"), wait=0.5)


def test_private_channel_with_a_token_and_without(relay: RelayProcess, echo: EchoAgent) -> None:
    echo.echo("ann", token("1", "Ann"))
    echo.open("ann", "private", "orders.5")
    assert echo.subscribed("ann", "private-orders.5")["type"] == "subscribed"
    echo.bind("listen", client="ann", kind="private", name="orders.5", event="OrderShipped")
    echo.echo("anon")
    echo.open("anon", "private", "orders.5")
    refused = echo.subscribed("anon", "private-orders.5")
    assert (refused["type"], refused["status"]) == ("subscription_error", 401)
    laravel_broadcaster(relay).trigger(["private-orders.5"], "App\\Events\\OrderShipped", {"n": 5})
    assert echo.expect(seen("ann", "event", "private-orders.5"))["data"] == {"n": 5}


def test_join_here_joining_leaving_get_user_info(echo: EchoAgent) -> None:
    echo.echo("ann", token("1", "Ann"))
    echo.open("ann", "join", "chat.1")
    assert echo.expect(seen("ann", "here", "presence-chat.1"))["users"] == [{"name": "Ann"}]
    echo.echo("ben", token("2", "Ben"))
    echo.open("ben", "join", "chat.1")
    here = echo.expect(seen("ben", "here", "presence-chat.1"))["users"]
    assert sorted(here, key=lambda u: u["name"]) == [{"name": "Ann"}, {"name": "Ben"}]
    assert echo.expect(seen("ann", "joining", "presence-chat.1"))["user"] == {"name": "Ben"}
    echo.send(op="disconnect", client="ben")
    assert echo.expect(seen("ann", "leaving", "presence-chat.1"))["user"] == {"name": "Ben"}


@pytest.mark.parametrize(
    ("kind", "name", "channel"),
    [
        ("private", "doc.7", "private-doc.7"),
        ("join", "room.7", "presence-room.7"),
    ],
)
def test_whisper_under_the_default_policy(
    echo: EchoAgent, kind: str, name: str, channel: str
) -> None:
    for client, user_id in (("ann", "1"), ("ben", "2")):
        echo.echo(client, token(user_id, client.title()))
        echo.open(client, kind, name)
        assert echo.subscribed(client, channel)["type"] == "subscribed"
        echo.bind("listenForWhisper", client=client, kind=kind, name=name, event="typing")
    echo.send(op="whisper", client="ann", kind=kind, name=name, event="typing", data={"who": "ann"})
    assert echo.expect(seen("ben", "whisper", channel))["data"] == {"who": "ann"}
    echo.never(seen("ann", "whisper", channel), wait=0.5)  # the sender is left out
    assert "pusher:error" not in json.dumps(echo.seen)


def test_notification_on_the_users_own_channel(
    laravel_relay: RelayProcess, laravel_echo: EchoAgent
) -> None:
    laravel_echo.echo("ann", token("1", "Ann"))
    laravel_echo.open("ann", "private", "App.Models.User.1")
    assert laravel_echo.subscribed("ann", "private-App.Models.User.1")["type"] == "subscribed"
    laravel_echo.bind("notification", client="ann", kind="private", name="App.Models.User.1")
    laravel_echo.echo("ben", token("2", "Ben"))
    laravel_echo.open("ben", "private", "App.Models.User.1")
    refused = laravel_echo.subscribed("ben", "private-App.Models.User.1")
    assert (refused["type"], refused["status"]) == ("subscription_error", 403)
    # What Laravel's BroadcastNotificationCreated broadcasts: the notification's data, id and type.
    payload = {"invoice": 42, "id": "9b1c", "type": "App\\Notifications\\InvoicePaid"}
    laravel_broadcaster(laravel_relay).trigger(["private-App.Models.User.1"], NOTIFICATION, payload)
    got = laravel_echo.expect(seen("ann", "notification", "private-App.Models.User.1"))
    assert got["notification"] == payload


def _answer_as_laravel(echo: EchoAgent, relay: RelayProcess, client: str, data: Any) -> None:
    """Sign the pending subscription as Laravel's /broadcasting/auth does, and hand it to Echo."""
    request = echo.expect(lambda o: o["type"] == "auth_request" and o["client"] == client)
    answer = laravel_broadcaster(relay).authenticate(
        request["channel"], request["socket_id"], custom_data=data
    )
    echo.send(op="auth_answer", client=client, channel=request["channel"], answer=answer)


def test_laravel_signed_private_and_presence_subscriptions(
    laravel_relay: RelayProcess, laravel_echo: EchoAgent
) -> None:
    # Integer user ids, as Laravel's PusherBroadcaster puts them in channel_data.
    members = {"ann": {"id": 1, "name": "Ann"}, "ben": {"id": 2, "name": "Ben"}}
    for client, info in members.items():
        laravel_echo.echo(client, laravel_auth=True)
        laravel_echo.open(client, "private", "orders.5")
        _answer_as_laravel(laravel_echo, laravel_relay, client, None)
        assert laravel_echo.subscribed(client, "private-orders.5")["type"] == "subscribed"
        laravel_echo.open(client, "join", "chat.9")
        channel_data = {"user_id": info["id"], "user_info": info}
        _answer_as_laravel(laravel_echo, laravel_relay, client, channel_data)
        assert laravel_echo.subscribed(client, "presence-chat.9")["type"] == "subscribed"
    here = laravel_echo.expect(seen("ben", "here", "presence-chat.9"))["users"]
    assert sorted(here, key=lambda u: u["id"]) == [members["ann"], members["ben"]]
    assert laravel_echo.expect(seen("ann", "joining", "presence-chat.9"))["user"] == members["ben"]

    laravel_echo.bind("listen", client="ben", kind="private", name="orders.5", event="Paid")
    laravel_broadcaster(laravel_relay).trigger(["private-orders.5"], "App\\Events\\Paid", {"n": 1})
    assert laravel_echo.expect(seen("ben", "event", "private-orders.5"))["data"] == {"n": 1}

    # A forged answer (another secret) is refused by the relay's socket.
    laravel_echo.echo("eve", laravel_auth=True)
    laravel_echo.open("eve", "private", "orders.6")
    request = laravel_echo.expect(lambda o: o["type"] == "auth_request" and o["client"] == "eve")
    forged = pusher.Pusher(app_id=APP_ID, key=APP_KEY, secret="not-the-relays-secret-012345")
    answer = forged.authenticate(request["channel"], request["socket_id"])
    laravel_echo.send(op="auth_answer", client="eve", channel=request["channel"], answer=answer)
    assert laravel_echo.subscribed("eve", "private-orders.6")["type"] == "subscription_error"


def test_integer_presence_ids_reach_pusher_js_as_strings(
    laravel_relay: RelayProcess, laravel_echo: EchoAgent
) -> None:
    # Pusher types channel_data's user_id as a string, and Laravel 9+ sends strings
    # (pusher-php-server 7 takes `string $user_id`); an older app's integer names the same user,
    # as a string. soketi hands integers back as integers: a deviation docs/laravel.md states.
    # Echo's here/joining/leaving pass user_info only, which keeps its integers either way.
    for client, user_id in (("ann", 1), ("ben", 2)):
        laravel_echo.echo(client, laravel_auth=True)
        laravel_echo.open(client, "join", "ids.1")
        data = {"user_id": user_id, "user_info": {"id": user_id}}
        _answer_as_laravel(laravel_echo, laravel_relay, client, data)
        laravel_echo.subscribed(client, "presence-ids.1")
    added = laravel_echo.expect(seen("ann", "member_added", "presence-ids.1"))
    listed = laravel_echo.expect(seen("ben", "members", "presence-ids.1"))
    assert added["id"] == "2"
    assert sorted(listed["ids"]) == ["1", "2"]


@pytest.fixture(scope="module")
def encrypted_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """`relay serve` with the Laravel policy and an encryption master key."""
    folder = tmp_path_factory.mktemp("encrypted")
    env = {
        **RELAY_ENV,
        "RELAY_POLICY_FILE": str(LARAVEL_POLICY),
        "RELAY_ENCRYPTION_MASTER_KEY_BASE64": MASTER_KEY,
    }
    process = RelayProcess(env, folder / "relay.log")
    yield process
    process.stop()


def test_encrypted_private_channel(encrypted_relay: RelayProcess) -> None:
    with echo_agent(encrypted_relay) as echo:
        echo.echo("ann", token("1", "Ann"))
        echo.open("ann", "encryptedPrivate", "App.Models.User.1")
        channel = "private-encrypted-App.Models.User.1"
        outcome = echo.subscribed("ann", channel)
        assert outcome["type"] == "subscribed", outcome
        echo.bind(
            "listen",
            client="ann",
            kind="encryptedPrivate",
            name="App.Models.User.1",
            event="InvoicePaid",
        )
        # Laravel encrypts with the same master key (PUSHER_ENCRYPTION_MASTER_KEY_BASE64).
        broadcaster = pusher.Pusher(
            app_id=APP_ID,
            key=APP_KEY,
            secret=APP_SECRET,
            host="127.0.0.1",
            port=encrypted_relay.port,
            ssl=False,
            encryption_master_key_base64=MASTER_KEY,
        )
        broadcaster.trigger([channel], "App\\Events\\InvoicePaid", {"amount": 12})
        assert echo.expect(seen("ann", "event", channel))["data"] == {"amount": 12}


def test_the_example_policy_is_the_documented_one() -> None:
    docs = (ROOT / "docs" / "laravel.md").read_text(encoding="utf-8")
    assert "examples/policies/laravel.toml" in docs
    assert Path(LARAVEL_POLICY).is_file()
