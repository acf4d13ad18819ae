"""pusher-js against API Gateway WebSockets, emulated by serverless-offline running this
repository's serverless.yml, with DynamoDB, SQS and SSM from moto in server mode: the stack
`make offline` starts (infra/offline.py), and the client settings it prints.

One stack serves the whole module: starting it (and the functions' Python processes) is the
slow part. Its policy is the chat policy behind one rule granting history (with the envelope),
so the history test (issue 16: history end to end on apigateway offline) shares it.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from core.settings import Settings
from core.tokens import mint_dev_token
from infra.offline_endpoints import API_KEY, APP_KEY, JWT_SECRET, PREFIX, STAGE
from tests.e2e.apigw_support import CHAT_POLICY
from tests.e2e.harness import ROOT
from tests.e2e.offline import ApiGatewayAgent, start_stack

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from infra.offline import OfflineStack
    from tests.e2e.harness import Observation

pytestmark = pytest.mark.e2e

HISTORY_RULE = """
[[rule]]
pattern = "history-{topic}"
subscribe = ["anyone"]
publish = ["backend"]
history = ["anyone"]
options = { history = { envelope = true } }
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineStack]:
    folder = tmp_path_factory.mktemp("apigateway-offline")
    policy = folder / "policy.toml"
    policy.write_text(HISTORY_RULE + CHAT_POLICY)
    # Rate limits stay on: the HTTP function shares its buckets through the DynamoDB store.
    env = {"RELAY_POLICY_FILE": str(policy)}
    started = start_stack(folder, extra_env=env)
    yield started
    started.stop()


@pytest.fixture
def clients(stack: OfflineStack) -> Iterator[ApiGatewayAgent]:
    agent = ApiGatewayAgent(stack)
    yield agent
    agent.close()


def token(user_id: str, name: str | None = None) -> str:
    return mint_dev_token(Settings(jwt_secret=JWT_SECRET), user_id=user_id, name=name)


def seen(client: str, kind: str, **fields: Any) -> Callable[[Observation], bool]:
    return lambda o: (
        o.get("client") == client
        and o["type"] == kind
        and all(o.get(k) == v for k, v in fields.items())
    )


def members(stack: OfflineStack, channel: str) -> list[str]:
    found = httpx.get(
        f"{stack.base}/v1/channels/{channel}/members", headers={"X-API-Key": API_KEY}, timeout=30
    )
    assert found.status_code == 200, found.text
    return sorted(m["user_id"] for m in found.json()["members"])


def test_presence_private_channels_and_publishing(
    stack: OfflineStack, clients: ApiGatewayAgent
) -> None:
    lobby = "presence-chat-lobby"
    clients.connect("ann", token("ann", "Ann"))
    clients.connect("ben", token("ben", "Ben"))
    assert clients.subscribe("ann", "private-user-ann")["type"] == "subscribed"
    refused = clients.subscribe("ann", "private-user-ben")  # /auth/channel says no
    assert (refused["type"], refused["status"]) == ("subscription_error", 403)

    assert clients.subscribe("ann", lobby)["members"] == ["ann"]
    assert clients.subscribe("ben", lobby)["members"] == ["ann", "ben"]
    added = clients.expect(seen("ann", "member_added", channel=lobby), timeout=20)
    assert (added["id"], added["info"]) == ("ben", {"name": "Ben"})
    assert members(stack, lobby) == ["ann", "ben"]

    published = stack.publish(
        {"name": "news", "channels": [lobby, "private-user-ann"], "data": {"n": 1}}
    )
    assert published.status_code == 200, published.text
    for client, channel in (("ann", lobby), ("ben", lobby), ("ann", "private-user-ann")):
        got = clients.expect(seen(client, "event", channel=channel, event="news"), timeout=20)
        assert got["data"] == {"n": 1}

    # A client event through $default reaches the other member, not the sender.
    clients.send(
        op="trigger", client="ben", channel=lobby, event="client-typing", data={"on": True}
    )
    typed = clients.expect(seen("ann", "event", channel=lobby, event="client-typing"), timeout=20)
    assert typed["data"] == {"on": True}
    clients.never(seen("ben", "event", event="client-typing"), wait=1.0)

    # Ben leaves: $disconnect announces it, and the roster no longer has him.
    clients.send(op="disconnect", client="ben")
    removed = clients.expect(seen("ann", "member_removed", channel=lobby), timeout=20)
    assert removed["id"] == "ben"
    assert members(stack, lobby) == ["ann"]


def history(stack: OfflineStack, channel: str, **params: Any) -> httpx.Response:
    """GET /v1/channels/{channel}/messages as a client: no credential (the rule grants it)."""
    url = f"{stack.base}/v1/channels/{channel}/messages"
    return httpx.get(url, params=params, timeout=30)


def test_history_is_kept_in_dynamodb_and_since_answers_what_followed(
    stack: OfflineStack, clients: ApiGatewayAgent
) -> None:
    channel = "history-offline"
    clients.connect("ann", token("ann", "Ann"))
    assert clients.subscribe("ann", channel)["type"] == "subscribed"
    for n in (1, 2, 3):
        published = stack.publish({"name": "update", "channel": channel, "data": {"n": n}})
        assert published.status_code == 200, published.text
    delivered = [
        clients.expect(seen("ann", "event", channel=channel, event="update"), timeout=20)["data"]
        for _ in range(3)
    ]
    assert [d["data"] for d in delivered] == [{"n": 1}, {"n": 2}, {"n": 3}]  # the envelope
    ids = [d["id"] for d in delivered]
    epoch = ids[0].split(":")[0]
    assert ids == [f"{epoch}:{n}" for n in (1, 2, 3)]

    whole = history(stack, channel)
    assert whole.status_code == 200, whole.text
    assert [(m["id"], m["data"]) for m in whole.json()["messages"]] == [
        (i, {"n": n}) for i, n in zip(ids, (1, 2, 3), strict=True)
    ]
    page = history(stack, channel, since=ids[0], limit=1).json()
    assert ([m["id"] for m in page["messages"]], page["next"]) == ([ids[1]], ids[1])
    page = history(stack, channel, since=page["next"]).json()
    assert ([m["data"] for m in page["messages"]], page["next"]) == ([{"n": 3}], None)
    assert history(stack, channel, since=ids[2]).json()["messages"] == []

    gap = history(stack, channel, since="0badf00d:1")  # an epoch this channel never had
    assert gap.status_code == 410, gap.text
    assert gap.headers["content-type"] == "application/problem+json"
    assert gap.json()["type"] == "urn:realtime-relay:problem:history-gap"
    assert gap.json()["latest"] == ids[2]

    # Kept by the functions in the relay's DynamoDB table (moto), not in a process: the log's
    # head names the epoch and the newest number, and each message is an item of its own.
    items = stack.moto.client("dynamodb").scan(
        TableName=f"{PREFIX}-state",
        FilterExpression="begins_with(pk, :log)",
        ExpressionAttributeValues={":log": {"S": f"log:{channel}"}},
    )["Items"]
    by_key = {item["pk"]["S"]: item for item in items}
    head = by_key.pop(f"log:{channel}")
    assert (head["e"]["S"], head["n"]["N"]) == (epoch, "3")
    assert sorted(by_key) == [f"log:{channel}:{i}" for i in ids]


def plant_ghost(stack: OfflineStack, connection_id: str, channel: str, user: str | None) -> None:
    """Rows of a connection whose $disconnect never ran (API Gateway only tries): no socket."""
    dynamodb = stack.moto.client("dynamodb")
    cid, expires = {"S": connection_id}, {"N": str(2**40)}
    common = {"socket_id": {"S": "1.2"}, "expires_at": expires}
    dynamodb.put_item(
        TableName=f"{PREFIX}-connections",
        Item={"connection_id": cid, "channels": {"SS": [channel]}, **common},
    )
    subscription = {"channel": {"S": channel}, "connection_id": cid, **common}
    if user is not None:
        subscription["user_id"] = {"S": user}
        dynamodb.put_item(
            TableName=f"{PREFIX}-presence",
            Item={
                "channel": {"S": channel},
                "user_id": {"S": user},
                "user_info": {"S": "{}"},
                "connections": {"SS": [connection_id]},
                "expires_at": expires,
            },
        )
    dynamodb.put_item(TableName=f"{PREFIX}-subscriptions", Item=subscription)


def rows_left(stack: OfflineStack, connection_id: str, channel: str) -> list[str]:
    dynamodb = stack.moto.client("dynamodb")
    cid = {"S": connection_id}
    keys = {
        "connections": {"connection_id": cid},
        "subscriptions": {"channel": {"S": channel}, "connection_id": cid},
    }
    return [
        table
        for table, key in keys.items()
        if "Item" in dynamodb.get_item(TableName=f"{PREFIX}-{table}", Key=key)
    ]


def test_a_vanished_connection_is_cleaned_up_on_the_next_publish(
    stack: OfflineStack, clients: ApiGatewayAgent
) -> None:
    clients.connect("ann", token("ann", "Ann"))
    assert clients.subscribe("ann", "private-ghosts")["type"] == "subscribed"
    plant_ghost(stack, "Z2hvc3Qx", "private-ghosts", None)
    assert rows_left(stack, "Z2hvc3Qx", "private-ghosts") == ["connections", "subscriptions"]

    published = stack.publish({"name": "tick", "channel": "private-ghosts", "data": "1"})
    assert published.status_code == 200, published.text
    got = clients.expect(seen("ann", "event", channel="private-ghosts", event="tick"), timeout=20)
    assert got["data"] == 1
    # Its post was answered 410: the connection and its subscription are gone.
    assert rows_left(stack, "Z2hvc3Qx", "private-ghosts") == []

    # In presence, the next post (here Ann's member_added) ends the vanished member too, after
    # the roster that still listed it.
    room = "presence-chat-ghosts"
    plant_ghost(stack, "Z2hvc3Qy", room, "ghost")
    assert members(stack, room) == ["ghost"]
    assert clients.subscribe("ann", room)["members"] == ["ann", "ghost"]
    removed = clients.expect(seen("ann", "member_removed", channel=room), timeout=20)
    assert removed["id"] == "ghost"
    assert rows_left(stack, "Z2hvc3Qy", room) == []
    assert members(stack, room) == ["ann"]


@pytest.mark.parametrize("credential", [None, "not-a-token", token("ann")[:-4] + "AAAA"])
def test_connect_without_a_valid_token_is_refused(
    stack: OfflineStack, credential: str | None
) -> None:
    query = f"?token={credential}&path=" if credential else "?path="
    url = f"ws://127.0.0.1:{stack.port}/{STAGE}{query}/app/{APP_KEY}?protocol=7"
    with pytest.raises(InvalidStatus) as refused, ws_connect(url, open_timeout=30):
        pass
    assert refused.value.response.status_code == 401


def test_the_settings_make_offline_prints_work(stack: OfflineStack) -> None:
    """examples/listen.mjs and `relay publish`, run as `make offline` tells a user to."""
    lines = dict(line.split(": ", 1) for line in stack.endpoints.describe())
    listener = subprocess.Popen(
        ["bash", "-c", lines["listen"]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout is not None
        for line in listener.stdout:
            if line.startswith("subscribed: "):
                break
        published = subprocess.run(
            ["bash", "-c", lines["publish"]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert published.returncode == 0, published.stderr
        assert listener.stdout.readline().strip() == (
            '{"channel":"news","event":"headline","data":{"text":"hi"}}'
        )
    finally:
        listener.kill()
        listener.communicate()
