"""The Lambda entry points with API Gateway event samples (tests/events/): $connect, $default,
$disconnect, the handshake function and the SQS worker, on moto and a stub management API."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from moto import mock_aws

from app import lambda_websocket as handlers
from app.lambda_handler import LambdaRuntime
from app.relay import Relay
from core.tokens import mint_dev_token
from providers.apigateway.records import Connection
from providers.apigateway.slices import Slice
from providers.pusherproto import signing
from tests import lambda_runtime
from tests.e2e.apigw_support import (
    APP_KEY,
    APP_SECRET,
    FakeLambda,
    aws_environment,
    build_relay,
    chat_policy,
    connect_event,
    deploy_infra,
    disconnect_event,
    event,
    message_event,
    relay_settings,
    subscribe_frame,
    token,
)
from tests.e2e.management_stub import StubThread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from core.policy import Policy
    from providers.apigateway.provider import ApiGatewayProvider
    from tests.e2e.management_stub import ManagementStub


class Lam:
    """The handlers of one Lambda container, with what they talk to."""

    def __init__(
        self,
        rt: LambdaRuntime,
        provider: ApiGatewayProvider,
        stub: ManagementStub,
        fake: FakeLambda,
    ) -> None:
        self.rt, self.provider, self.stub, self.invoker = rt, provider, stub, fake

    def connect(self, cid: str, user: str | None, name: str | None = None) -> str:
        answer = handlers.connect(connect_event(cid, token(user, name) if user else None), None)
        assert answer == {"statusCode": 200}, answer
        row = self.rt.run(self.provider.store.connection(cid))
        assert row is not None
        return row.socket_id

    def send(self, cid: str, frame: dict[str, Any]) -> dict[str, Any] | None:
        return self.send_text(cid, orjson.dumps(frame).decode())

    def send_text(self, cid: str, body: str) -> dict[str, Any] | None:
        found = message_event(cid, {})
        found["body"] = body
        answer = handlers.message(found, None)
        assert answer["statusCode"] == 200, answer
        return None if "body" not in answer else dict(orjson.loads(answer["body"]))

    def received(self, cid: str) -> list[dict[str, Any]]:
        return [orjson.loads(b) for b in self.stub.bodies(cid)]


@contextlib.contextmanager
def container(monkeypatch: pytest.MonkeyPatch, policy: Policy, **gateway: Any) -> Iterator[Lam]:
    """A Lambda container on moto and a stub management API, the relay under `policy`."""
    aws_environment(monkeypatch)
    with mock_aws(), StubThread() as stub:
        deploy_infra()
        fake = FakeLambda()
        relay, provider = build_relay(stub.endpoint, policy=policy, functions=fake, **gateway)
        rt = LambdaRuntime(relay)
        lambda_runtime.install(rt)
        try:
            yield Lam(rt, provider, stub, fake)
        finally:
            lambda_runtime.install()


@pytest.fixture
def lam(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Lam]:
    with container(monkeypatch, chat_policy(tmp_path)) as found:
        yield found


def test_connect_stores_the_user_and_starts_the_handshake(lam: Lam) -> None:
    socket_id = lam.connect("PpGEacRJoAMCJbw=", "ann")
    row = lam.rt.run(lam.provider.store.connection("PpGEacRJoAMCJbw="))
    assert row is not None
    assert row.user_id == "ann"
    assert row.token_expires is not None
    [invoke] = lam.invoker.invokes
    assert invoke["InvocationType"] == "Event"
    assert invoke["FunctionName"] == "relay-unit-handshake"
    assert invoke["Payload"] == {"connection_id": "PpGEacRJoAMCJbw=", "socket_id": socket_id}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"token": "not-a-jwt"}, 401),
        ({"token": None}, 401),
        ({"path": "/app/other-key?protocol=7"}, 403),
        ({"path": "/app/unit-key?protocol=3"}, 400),
        ({"origin": "https://evil.example"}, 403),
    ],
)
def test_connect_refusals_store_nothing(lam: Lam, change: dict[str, Any], status: int) -> None:
    found = connect_event(
        "c1", token("ann"), origin=change.pop("origin", "https://app.example.com")
    )
    params = found["queryStringParameters"]
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    assert handlers.connect(found, None)["statusCode"] == status
    assert lam.rt.run(lam.provider.store.connection("c1")) is None
    assert lam.invoker.invokes == []


@pytest.mark.parametrize("names", [("token", "token"), ("token", "Token")])
def test_a_repeated_query_parameter_is_refused(lam: Lam, names: tuple[str, str]) -> None:
    # API Gateway keeps the last `token` in queryStringParameters and every one in the multi-value
    # form; the anonymous-or-user answer must not depend on which one a proxy or a test picked.
    found = connect_event("c1", token("ann"))
    params = found["queryStringParameters"]
    multi: dict[str, list[str]] = {name: [value] for name, value in params.items()}
    multi.setdefault(names[1], []).append("not-a-jwt")
    found["multiValueQueryStringParameters"] = multi
    answer = handlers.connect(found, None)
    assert answer == {"statusCode": 400, "body": "a query parameter repeats"}
    assert lam.rt.run(lam.provider.store.connection("c1")) is None
    found["multiValueQueryStringParameters"] = {name: [value] for name, value in params.items()}
    assert handlers.connect(found, None)["statusCode"] == 200


def test_an_expired_token_is_refused(lam: Lam) -> None:
    old = mint_dev_token(relay_settings(), user_id="ann", ttl=60, now=time.time() - 3600)
    assert handlers.connect(connect_event("c1", old), None)["statusCode"] == 401
    assert lam.rt.run(lam.provider.store.connection("c1")) is None


def test_after_its_token_expires_a_connection_keeps_only_signed_rights(lam: Lam) -> None:
    socket_id = lam.connect("c1", "ann")
    expired = Connection("c1", socket_id, 2**40, user_id="ann", token_expires=int(time.time()) - 1)
    lam.rt.run(lam.provider.store.add_connection(expired))
    public = lam.send("c1", subscribe_frame("news"))
    assert public is not None
    assert public["data"]["status"] == 401
    assert "token expired" in public["data"]["error"]
    signed = lam.send("c1", subscribe_frame("private-team", socket_id))
    assert signed is not None
    assert signed["event"] == "pusher_internal:subscription_succeeded"


def test_a_failed_handshake_start_refuses_the_connection(lam: Lam) -> None:
    lam.invoker.fail = True
    assert handlers.connect(connect_event("c1", token("ann")), None)["statusCode"] == 500
    assert lam.rt.run(lam.provider.store.connection("c1")) is None


def test_handshake_posts_connection_established(lam: Lam) -> None:
    socket_id = lam.connect("c1", "ann")
    lam.stub.failures["c1"] = [(410, "GoneException"), (410, "GoneException")]  # $connect running
    assert handlers.handshake(lam.invoker.invokes[0]["Payload"], None) == {"statusCode": 200}
    [greeting] = lam.received("c1")
    assert greeting["event"] == "pusher:connection_established"
    assert orjson.loads(greeting["data"]) == {"socket_id": socket_id, "activity_timeout": 120}
    assert handlers.handshake({"nonsense": True}, None) == {"statusCode": 500}


def test_ping_private_and_presence(lam: Lam) -> None:
    assert lam.send("x", {"event": "pusher:ping", "data": {}}) == {
        "event": "pusher:pong",
        "data": "{}",
    }
    ann = lam.connect("ann1", "ann", "Ann")
    ben = lam.connect("ben1", "ben", "Ben")
    ok = lam.send("ann1", subscribe_frame("private-team", ann))
    assert ok is not None
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    forged = lam.send("ben1", subscribe_frame("private-team", ann))  # signed for Ann's socket
    assert forged is not None
    assert forged["data"]["status"] == 401
    # Presence rosters are posted (before any member event), not returned.
    presence_ann = {"user_id": "ann", "user_info": {"name": "Ann"}}
    assert lam.send("ann1", subscribe_frame("presence-chat-1", ann, presence_ann)) is None
    [joined] = lam.received("ann1")
    assert joined["event"] == "pusher_internal:subscription_succeeded"
    assert orjson.loads(joined["data"])["presence"] == {
        "ids": ["ann"],
        "hash": {"ann": {"name": "Ann"}},
        "count": 1,
    }
    presence_ben = {"user_id": "ben", "user_info": {}}
    assert lam.send("ben1", subscribe_frame("presence-chat-1", ben, presence_ben)) is None
    [second] = lam.received("ben1")  # nobody announces Ben to himself
    assert orjson.loads(second["data"])["presence"]["ids"] == ["ann", "ben"]
    added = lam.received("ann1")[-1]
    assert added["event"] == "pusher_internal:member_added"
    assert orjson.loads(added["data"]) == {"user_id": "ben", "user_info": {}}

    # A client event goes to the others, with the sender's presence user id.
    assert (
        lam.send(
            "ben1", {"event": "client-typing", "channel": "presence-chat-1", "data": {"on": 1}}
        )
        is None
    )
    assert lam.received("ann1")[-1] == {
        "event": "client-typing",
        "channel": "presence-chat-1",
        "data": '{"on":1}',
        "user_id": "ben",
    }
    refused = lam.send("ben1", {"event": "client-x", "channel": "private-team", "data": {}})
    assert refused is not None
    assert "not subscribed" in refused["data"]["message"]

    # Ben leaves: Ann hears member_removed once his last connection is gone.
    assert handlers.disconnect(disconnect_event("ben1"), None) == {"statusCode": 200}
    removed = lam.received("ann1")[-1]
    assert removed["event"] == "pusher_internal:member_removed"
    assert orjson.loads(removed["data"]) == {"user_id": "ben"}
    assert lam.rt.run(lam.provider.store.connection("ben1")) is None


def test_a_vanished_member_leaves_after_the_roster_that_lists_it(lam: Lam) -> None:
    ghost = lam.connect("ghost", "ghost")
    lam.send("ghost", subscribe_frame("presence-chat-2", ghost, {"user_id": "ghost"}))
    lam.stub.gone.add("ghost")  # it vanished without $disconnect
    ann = lam.connect("ann1", "ann")
    assert lam.send("ann1", subscribe_frame("presence-chat-2", ann, {"user_id": "ann"})) is None
    roster, removed = lam.received("ann1")
    assert orjson.loads(roster["data"])["presence"]["ids"] == ["ann", "ghost"]
    assert removed["event"] == "pusher_internal:member_removed"  # its member_added found it gone
    assert orjson.loads(removed["data"]) == {"user_id": "ghost"}
    assert lam.rt.run(lam.provider.store.connection("ghost")) is None


def test_public_subscribe_unsubscribe_and_signin(lam: Lam) -> None:
    socket_id = lam.connect("c1", "ann")
    ok = lam.send("c1", subscribe_frame("news"))
    assert ok is not None
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    assert lam.send("c1", {"event": "pusher:unsubscribe", "data": {"channel": "news"}}) is None
    assert lam.rt.run(lam.provider.store.subscription("news", "c1")) is None
    bad = lam.send("c1", subscribe_frame("bad channel!"))
    assert bad is not None
    assert bad["data"]["status"] == 400
    user_data = '{"id":"ann","user_info":{}}'
    auth = signing.user_auth(APP_KEY, APP_SECRET, socket_id=socket_id, user_data=user_data)
    signed = lam.send(
        "c1", {"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}
    )
    # Posted, not the route response: the sign-in also tells Ann's watchers she is online.
    assert signed is None
    assert [f["event"] for f in lam.received("c1")] == ["pusher:signin_success"]
    own = lam.send("c1", subscribe_frame("#server-to-user-ann"))
    assert own is not None
    assert own["event"] == "pusher_internal:subscription_succeeded"
    other = lam.send("c1", subscribe_frame("#server-to-user-ben"))
    assert other is not None
    assert other["data"]["status"] == 403
    garbage = lam.send("c1", {"no": "event"})
    assert garbage is not None
    assert garbage["event"] == "pusher:error"


def test_frames_over_32_kb_are_refused(lam: Lam) -> None:
    lam.connect("c1", "ann")
    reply = lam.send("c1", {"event": "client-big", "channel": "private-a", "data": "x" * 33_000})
    assert reply is not None
    assert "32768 bytes" in reply["data"]["message"]


def test_unknown_connections_are_told_to_reconnect(lam: Lam) -> None:
    # The error is posted before the connection is closed: a route response would come after.
    assert lam.send("ghost", subscribe_frame("news")) is None
    [told] = lam.received("ghost")
    assert told["event"] == "pusher:error"
    assert told["data"]["code"] == 4200
    assert lam.stub.deletes == ["ghost"]


def test_the_fanout_worker_posts_a_queued_slice(lam: Lam) -> None:
    part = Slice("news", '{"event":"e","channel":"news","data":"1"}', ("a", "b", "gone"))
    lam.stub.gone.add("gone")
    records = event("sqs_fanout")
    records["Records"][0]["body"] = part.encode()
    records["Records"].append({**records["Records"][0], "body": "not a slice"})
    answer = handlers.fanout(records, None)
    assert answer == {"statusCode": 200, "sent": 2, "batchItemFailures": []}
    assert sorted(cid for cid, _ in lam.stub.posts) == ["a", "b"]


def test_handlers_refuse_another_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_environment(monkeypatch)
    rt = LambdaRuntime(Relay.build(relay_settings(provider="local")))
    lambda_runtime.install(rt)
    try:
        assert handlers.message(message_event("c1", {"event": "pusher:ping"}), None) == {
            "statusCode": 500
        }
    finally:
        lambda_runtime.install()
