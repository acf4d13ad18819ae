"""The shared Pusher session behind API Gateway's `$default` (providers/apigateway/protocol.py):
each rule the two servers used to apply differently, once more through the handler, its state on
moto between frames (tests/unit/providers/pusherproto/test_session.py has them without tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from core.policy import Policy
from providers.pusherproto import signing
from tests.e2e.apigw_support import APP_KEY, APP_SECRET, CHAT_POLICY, subscribe_frame
from tests.unit.app.test_lambda_websocket import container

if TYPE_CHECKING:
    from collections.abc import Iterator

    from core.schemas import EventSchemas
    from providers.pusherproto.config import SessionConfig, SubscriptionGate
    from tests.unit.app.test_lambda_websocket import Lam

# Before the chat policy of the handlers' tests, whose rules come after these.
SESSION_RULES = """
[[rule]]
pattern = "private-orders-{id}"
subscribe = ["user"]
publish = ["backend"]
client_events = ["user"]

[rule.options.schemas.client-order]
type = "object"
required = ["id"]

[[rule]]
pattern = "members-{room}"
subscribe = ["user"]

[[rule]]
pattern = "ann-{room}"
subscribe = ["user:ann"]
"""


@pytest.fixture
def lam(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lam]:
    policy = Policy.from_toml(SESSION_RULES + CHAT_POLICY, source="session rules")
    with container(monkeypatch, policy, allow_anonymous=True) as found:
        yield found


def test_client_events_are_checked_against_the_policys_schemas(lam: Lam) -> None:
    # drift: $default skipped the JSON Schemas core/schemas.py promises for client events.
    channel = "private-orders-1"
    for cid, user in (("ann1", "ann"), ("ben1", "ben")):
        socket_id = lam.connect(cid, user)
        joined = lam.send(cid, subscribe_frame(channel, socket_id))
        assert joined is not None
        assert joined["event"] == "pusher_internal:subscription_succeeded"
    bad = {"event": "client-order", "channel": channel, "data": {"total": 3}}
    refused = lam.send("ann1", bad)
    assert refused is not None
    assert refused["data"]["message"].startswith("Client event rejected: data does not match")
    assert lam.send("ann1", {**bad, "data": {"id": 7}}) is None
    assert [f["data"] for f in lam.received("ben1") if f["event"] == "client-order"] == ['{"id":7}']


@pytest.mark.parametrize(
    ("user", "channel", "status"), [(None, "members-lounge", 401), ("ben", "ann-diary", 403)]
)
def test_a_public_channel_the_policy_refuses(
    lam: Lam, user: str | None, channel: str, status: int
) -> None:
    lam.connect("c1", user)
    refused = lam.send("c1", subscribe_frame(channel))
    assert refused is not None
    assert (refused["event"], refused["data"]["status"]) == ("pusher:subscription_error", status)


def test_a_duplicate_subscription_is_ignored(lam: Lam) -> None:
    # drift: $default subscribed again and answered; local ignored it.
    socket_id = lam.connect("c1", "ann")
    presence = {"user_id": "ann"}
    assert lam.send("c1", subscribe_frame("presence-chat-1", socket_id, presence)) is None
    assert lam.send("c1", subscribe_frame("news")) is not None
    posted = len(lam.received("c1"))
    assert lam.send("c1", subscribe_frame("news")) is None
    assert lam.send("c1", subscribe_frame("presence-chat-1", socket_id, presence)) is None
    assert len(lam.received("c1")) == posted  # no second roster either


def test_signin_makes_the_connection_that_user(lam: Lam) -> None:
    # drift: $default decided public channels for the token's user only, never pusher:signin's.
    lam.connect("c1", None)
    refused = lam.send("c1", subscribe_frame("ann-diary"))
    assert refused is not None
    assert refused["data"]["status"] == 401
    row = lam.rt.run(lam.provider.store.connection("c1"))
    assert row is not None
    user_data = '{"id":"ann","user_info":{}}'
    auth = signing.user_auth(APP_KEY, APP_SECRET, socket_id=row.socket_id, user_data=user_data)
    lam.send("c1", {"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}})
    joined = lam.send("c1", subscribe_frame("ann-diary"))
    assert joined is not None
    assert joined["event"] == "pusher_internal:subscription_succeeded"


def test_subscriptions_are_capped(lam: Lam) -> None:
    # drift: $default had no cap: the row's channel set grew with every subscription.
    lam.provider.settings = lam.provider.settings.model_copy(
        update={"max_subscriptions_per_connection": 2}
    )
    lam.connect("c1", "ann")
    for channel in ("a", "b"):
        assert lam.send("c1", subscribe_frame(channel)) is not None
    refused = lam.send("c1", subscribe_frame("c"))
    assert refused is not None
    assert (refused["data"]["type"], refused["data"]["status"]) == ("TooManySubscriptions", 400)


def test_too_many_invalid_frames_close_the_connection(lam: Lam) -> None:
    # drift: $default answered invalid frames forever; the local server closed after the limit.
    lam.provider.settings = lam.provider.settings.model_copy(update={"max_invalid_frames": 2})
    lam.connect("c1", "ann")
    for body in ("{not json", "x" * 33_000):  # not JSON; over API Gateway's frame size
        found = lam.send_text("c1", body)
        assert found is not None
        assert found["data"]["code"] is None
    assert lam.send_text("c1", "[]") is None  # posted, then the connection is closed
    [closing] = lam.received("c1")
    assert closing["data"]["code"] == 4010
    assert lam.stub.deletes == ["c1"]


def test_client_events_are_rate_limited_per_connection(
    lam: Lam, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = lam.provider.session_config

    def frozen(
        gate: SubscriptionGate, policy: Policy, schemas: EventSchemas | None = None
    ) -> SessionConfig:
        config = original(gate, policy, schemas)
        config.clock = lambda: 1_800_000_000.0  # every frame in the same second, however slow
        return config

    monkeypatch.setattr(lam.provider, "session_config", frozen)
    lam.provider.gateway = lam.provider.gateway.model_copy(update={"client_events_per_second": 3})
    socket_id = lam.connect("c1", "ann")
    lam.send("c1", subscribe_frame("private-team", socket_id))
    typed = {"event": "client-typing", "channel": "private-team", "data": {}}
    assert [lam.send("c1", typed) for _ in range(3)] == [None, None, None]
    limited = lam.send("c1", typed)
    assert limited is not None
    assert limited["data"]["code"] == 4301
