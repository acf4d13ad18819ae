"""The one Pusher protocol session, on its own: scripted frames in, frames and decisions out.

No socket, no table: a port that keeps the channels in memory (several sessions share it, as the
connections of one server share the hub or the tables). Each drift the local server and the API
Gateway handlers had before they shared this session is a regression test here ("drift:").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
import pytest

from app.relay import Relay
from core.policy import Policy
from core.provider import Limits, Member, PresenceData
from core.schemas import EventSchemas
from core.settings import Settings
from providers.pusherproto import signing
from providers.pusherproto.config import SessionConfig
from providers.pusherproto.outcome import MEMBER_ADDED, MEMBER_REMOVED, Broadcast, Outcome
from providers.pusherproto.port import ConnectionGone, Counter, Joined, Left
from providers.pusherproto.session import Session
from providers.pusherproto.state import SessionState, Window
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from providers.pusherproto.cache import CacheEntry

KEY, SECRET = str(UNIT_SETTINGS["app_key"]), str(UNIT_SETTINGS["app_secret"])
NOW = 1_800_000_000.0
POLICY = """
# Channels of the session's tests: who subscribes (public ones), who sends client events.
[[rule]]
pattern = "private-quiet-{room}"
subscribe = ["user"]

[[rule]]
pattern = "private-{room}"
subscribe = ["user"]
client_events = ["anyone"]

[rule.options.schemas.client-order]
type = "object"
required = ["id"]

[[rule]]
pattern = "presence-{room}"
subscribe = ["user"]
client_events = ["user:ann"]

[[rule]]
pattern = "members-{room}"
subscribe = ["user"]

[[rule]]
pattern = "ann-{room}"
subscribe = ["user:ann"]

[[rule]]
pattern = "{room}"
subscribe = ["anyone"]
"""


class Channels:
    """Who is subscribed where, shared by the ports of several sessions."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[str]] = {}
        self.presence: dict[str, dict[str, tuple[dict[str, Any], set[str]]]] = {}
        self.online: dict[str, set[str]] = {}  # user id -> signed-in sockets
        self.cache: dict[str, CacheEntry] = {}
        self.announced: dict[str, float] = {}


class FakePort:
    """SessionPort in memory; records every call."""

    def __init__(self, channels: Channels, state: SessionState | None) -> None:
        self.channels = channels
        self.state = state
        self.socket = state.socket_id if state else "gone"
        self.calls: list[str] = []
        self.vetoes: set[Counter] = set()  # counters another invocation filled meanwhile
        self.gone = False

    async def load(self) -> SessionState | None:
        self.calls.append("load")
        return self.state

    async def join(self, channel: str, member: PresenceData | None) -> Joined:
        self.calls.append(f"join {channel}")
        if self.gone:
            raise ConnectionGone(self.socket)
        subscribers = self.channels.subscribers.setdefault(channel, set())
        subscribers.add(self.socket)
        if member is None:
            return Joined(count=len(subscribers))
        roster = self.channels.presence.setdefault(channel, {})
        first = member.user_id not in roster
        roster.setdefault(member.user_id, (dict(member.user_info), set()))[1].add(self.socket)
        members = [Member(user, info) for user, (info, _) in roster.items()]
        return Joined(members, first, count=len(subscribers))

    async def leave(self, channel: str) -> Left:
        self.calls.append(f"leave {channel}")
        subscribers = self.channels.subscribers.get(channel, set())
        subscribers.discard(self.socket)
        roster = self.channels.presence.get(channel, {})
        for user, (_, sockets) in list(roster.items()):
            if self.socket in sockets:
                sockets.discard(self.socket)
                if not sockets:
                    del roster[user]
                    return Left(user, len(subscribers))
        return Left(count=len(subscribers))

    async def sign_in(self, user_id: str) -> bool:
        self.calls.append(f"sign_in {user_id}")
        if self.gone:
            raise ConnectionGone(self.socket)
        sockets = self.channels.online.setdefault(user_id, set())
        sockets.add(self.socket)
        return len(sockets) == 1

    async def sign_out(self, user_id: str) -> bool:
        self.calls.append(f"sign_out {user_id}")
        sockets = self.channels.online.get(user_id, set())
        sockets.discard(self.socket)
        if sockets:
            return False
        self.channels.online.pop(user_id, None)
        return True

    async def online(self, user_ids: Sequence[str]) -> list[str]:
        return [u for u in user_ids if u in self.channels.online]

    async def cached(self, channel: str) -> CacheEntry | None:
        self.calls.append(f"cached {channel}")
        return self.channels.cache.get(channel)

    async def throttle(self, channel: str, *, now: float, span: float) -> bool:
        if now - self.channels.announced.get(channel, float("-inf")) < span:
            return False
        self.channels.announced[channel] = now
        return True

    async def count(self, counter: Counter, *, now: float, span: float, limit: int) -> bool:
        self.calls.append(f"count {counter}")
        return counter not in self.vetoes


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Client:
    """One connection: its session, its port, and helpers that script frames."""

    def __init__(self, session: Session, port: FakePort) -> None:
        self.session, self.port = session, port

    @property
    def state(self) -> SessionState:
        assert self.session.state is not None
        return self.session.state

    async def send(self, event: str, data: Any = None, **extra: Any) -> Outcome:
        frame: dict[str, Any] = {"event": event, **extra}
        if data is not None:
            frame["data"] = data
        return await self.session.receive(orjson.dumps(frame).decode())

    async def subscribe(self, channel: str, **data: Any) -> Outcome:
        return await self.send("pusher:subscribe", {"channel": channel, **data})

    async def subscribe_signed(self, channel: str, member: dict[str, Any] | None = None) -> Outcome:
        channel_data = None if member is None else orjson.dumps(member).decode()
        auth = signing.channel_auth(
            KEY, SECRET, socket_id=self.port.socket, channel=channel, channel_data=channel_data
        )
        extra = {} if channel_data is None else {"channel_data": channel_data}
        return await self.subscribe(channel, auth=auth, **extra)

    async def sign_in(self, user_id: str) -> Outcome:
        user_data = orjson.dumps({"id": user_id, "user_info": {}}).decode()
        auth = signing.user_auth(KEY, SECRET, socket_id=self.port.socket, user_data=user_data)
        return await self.send("pusher:signin", {"auth": auth, "user_data": user_data})

    async def trigger(self, channel: str, event: str = "client-hi", data: Any = None) -> Outcome:
        return await self.send(event, {} if data is None else data, channel=channel)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(clock: Clock) -> SessionConfig:
    policy = Policy.from_toml(POLICY, source="session test policy")
    # The real authorizing service, on a memory store: the session asks it about public channels.
    settings = Settings(**{**UNIT_SETTINGS, "rate_auth_burst": 30, "rate_ip_multiplier": 1.0})
    return SessionConfig(
        app_key=KEY,
        app_secret=SECRET,
        limits=Limits(),
        gate=Relay.build(settings, policy=policy).authorizer,
        policy=policy,
        schemas=EventSchemas(policy),
        max_subscriptions=5,
        max_invalid_frames=3,
        subscription_counts=False,  # test_session_parity.py has them
        clock=clock,
    )


@pytest.fixture
def channels() -> Channels:
    return Channels()


def connect(
    config: SessionConfig,
    channels: Channels,
    socket_id: str = "1.1",
    *,
    client_ip: str = "10.0.0.1",
    **state: Any,
) -> Client:
    """A new connection (its state handed to the port, read when first needed)."""
    port = FakePort(channels, SessionState(socket_id, **state))
    return Client(Session(config, port, client_ip=client_ip), port)


def error(outcome: Outcome) -> dict[str, Any]:
    """The one pusher:error of an outcome."""
    [reply] = outcome.replies
    frame: dict[str, Any] = orjson.loads(reply)
    assert frame["event"] == "pusher:error", frame
    assert outcome.broadcasts == []
    return dict(frame["data"])


def refusal(outcome: Outcome) -> dict[str, Any]:
    """The one pusher:subscription_error of an outcome."""
    [reply] = outcome.replies
    frame: dict[str, Any] = orjson.loads(reply)
    assert frame["event"] == "pusher:subscription_error", frame
    assert outcome.broadcasts == []
    return dict(frame["data"])


def succeeded(outcome: Outcome, channel: str) -> dict[str, Any]:
    """The data of the subscription_succeeded an outcome starts with."""
    frame = orjson.loads(outcome.replies[0])
    assert frame["event"] == "pusher_internal:subscription_succeeded", frame
    assert frame["channel"] == channel
    data: dict[str, Any] = orjson.loads(frame["data"])
    return data


# -- frames that need no state -----------------------------------------------------------------
async def test_ping_is_answered_without_reading_the_state(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    assert (await client.send("pusher:ping", {})).replies == ['{"event":"pusher:pong","data":"{}"}']
    assert (await client.send("pusher:pong", {})) == Outcome()
    assert (await client.send("pusher:anything-else", {})) == Outcome()
    assert client.port.calls == []


async def test_invalid_frames_get_errors_then_the_connection_is_closed_with_4010(
    config: SessionConfig, channels: Channels, clock: Clock
) -> None:
    client = connect(config, channels)
    for text in ("{not json", "[]", '{"event": 5}'):
        assert error(await client.session.receive(text))["code"] is None
    closed = await client.session.receive("nope")
    assert error(closed) == {
        "message": "Too many invalid frames: more than 3 in 60 seconds",
        "code": 4010,
    }
    assert closed.close == 4010
    clock.now += 60  # a new window
    assert (await client.session.invalid("Invalid frame: not UTF-8")).close is None


async def test_an_invalid_frame_the_server_counted_already_closes(
    config: SessionConfig, channels: Channels
) -> None:
    # drift: the API Gateway handlers counted no invalid frame; their count is the row's, which
    # concurrent invocations share, so the port's refusal closes as the state's would.
    client = connect(config, channels)
    client.port.vetoes.add(Counter.INVALID_FRAMES)
    assert (await client.session.receive("{")).close == 4010


# -- subscribing -------------------------------------------------------------------------------
async def test_public_subscription_succeeds_with_empty_data(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    outcome = await client.subscribe("news")
    assert succeeded(outcome, "news") == {}
    assert outcome.broadcasts == []
    assert client.state.channels == {"news"}
    assert channels.subscribers["news"] == {"1.1"}


async def test_a_duplicate_subscription_is_ignored(
    config: SessionConfig, channels: Channels
) -> None:
    # drift: API Gateway subscribed again and answered; local ignored it. pusher-js never
    # resubscribes, so the duplicate changes nothing and gets no answer, on every kind of channel.
    client = connect(config, channels)
    await client.subscribe("news")
    await client.subscribe_signed("presence-room", {"user_id": "ann"})
    await client.sign_in("ann")
    await client.subscribe("#server-to-user-ann")
    client.port.calls.clear()
    assert await client.subscribe("news") == Outcome()
    assert await client.subscribe_signed("presence-room", {"user_id": "ann"}) == Outcome()
    assert await client.subscribe("#server-to-user-ann") == Outcome()
    assert client.port.calls == []


@pytest.mark.parametrize(
    "channel", ["x" * 165, "bad channel", "", "private-", "private-encrypted-x", 12]
)
async def test_a_malformed_channel_is_a_400_invalid_channel(
    config: SessionConfig, channels: Channels, channel: object
) -> None:
    client = connect(config, channels)
    outcome = await client.send("pusher:subscribe", {"channel": channel, "auth": "k:0"})
    assert refusal(outcome)["type"] == "InvalidChannel"
    assert refusal(outcome)["status"] == 400
    assert orjson.loads(outcome.replies[0])["channel"] == (channel if channel != 12 else "")


async def test_subscriptions_past_the_cap_are_refused(
    config: SessionConfig, channels: Channels
) -> None:
    # drift: the API Gateway handlers had no cap at all (the row's channel set grew unbounded).
    client = connect(config, channels)
    for i in range(5):
        succeeded(await client.subscribe(f"c{i}"), f"c{i}")
    assert refusal(await client.subscribe("c5")) == {
        "type": "TooManySubscriptions",
        "error": "this connection is subscribed to 5 channels, the limit",
        "status": 400,
    }
    # The user's own #server-to-user- channel is not counted.
    await client.sign_in("ann")
    succeeded(await client.subscribe("#server-to-user-ann"), "#server-to-user-ann")
    await client.send("pusher:unsubscribe", {"channel": "c0"})
    succeeded(await client.subscribe("c5"), "c5")


@pytest.mark.parametrize(
    ("user", "channel", "status"),
    [
        (None, "members-lounge", 401),  # a login would help
        ("ben", "ann-diary", 403),  # known, and not allowed
        (None, "ann-diary", 401),
    ],
)
async def test_a_public_channel_the_policy_refuses_gets_the_status_auth_channel_gives(
    config: SessionConfig, channels: Channels, user: str | None, channel: str, status: int
) -> None:
    # drift: local said 403 whoever asked, API Gateway 401 when a login would help. Both now
    # answer as /auth/channel answers the same user for a private channel.
    client = connect(config, channels, user_id=user)
    refused = refusal(await client.subscribe(channel))
    assert (refused["type"], refused["status"]) == ("AuthError", status)
    assert channel not in channels.subscribers


async def test_public_subscriptions_count_against_the_auth_rate(
    config: SessionConfig, channels: Channels
) -> None:
    # The authorizing service's order: identity, rate limit, policy. An anonymous connection is
    # its address: every socket from it shares one bucket (burst 30 here).
    sockets = [connect(config, channels, f"1.{i}") for i in range(10)]
    for i in range(30):
        succeeded(await sockets[i % 10].subscribe(f"c{i}"), f"c{i}")
    refused = refusal(await sockets[0].subscribe("one-more"))
    assert (refused["type"], refused["status"]) == ("LimitReached", 429)
    other = connect(config, channels, "2.1", client_ip="10.0.0.2")
    succeeded(await other.subscribe("one-more"), "one-more")
    # Signed subscriptions were counted when /auth/channel signed them, not again here.
    succeeded(await sockets[0].subscribe_signed("private-team"), "private-team")


async def test_pusher_signin_is_the_connections_user_for_the_policy(
    config: SessionConfig, channels: Channels
) -> None:
    # drift: on API Gateway only the token's user counted, on local the sign-in's.
    client = connect(config, channels)
    assert refusal(await client.subscribe("ann-diary"))["status"] == 401
    await client.sign_in("ann")
    succeeded(await client.subscribe("ann-diary"), "ann-diary")


async def test_a_presence_member_is_not_the_connections_user(
    config: SessionConfig, channels: Channels
) -> None:
    # drift: local took the first presence member's id as the socket's user for every later
    # decision; a signed channel_data proves who joins that channel, not who the socket is.
    client = connect(config, channels)
    succeeded(await client.subscribe_signed("presence-room", {"user_id": "ann"}), "presence-room")
    assert refusal(await client.subscribe("ann-diary"))["status"] == 401


async def test_an_expired_token_keeps_only_signed_subscriptions(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels, user_id="ann", user_expires=NOW - 1)
    assert refusal(await client.subscribe("news")) == {
        "type": "AuthError",
        "error": "token expired: reconnect with a fresh token",
        "status": 401,
    }
    succeeded(await client.subscribe_signed("private-team"), "private-team")


@pytest.mark.parametrize(
    ("auth", "label"),
    [("unit-key:deadbeef", "garbage"), (12345, "not a string"), (None, "missing")],
)
async def test_private_channels_need_this_sockets_signature(
    config: SessionConfig, channels: Channels, auth: object, label: str
) -> None:
    client = connect(config, channels)
    extra = {} if auth is None else {"auth": auth}
    assert refusal(await client.subscribe("private-team", **extra)) == {
        "type": "AuthError",
        "error": "Invalid signature",
        "status": 401,
    }, label
    other = connect(config, channels, "2.2")
    signed_for_other = signing.channel_auth(KEY, SECRET, socket_id="2.2", channel="private-team")
    assert refusal(await client.subscribe("private-team", auth=signed_for_other))["status"] == 401
    succeeded(await other.subscribe("private-team", auth=signed_for_other), "private-team")


async def test_presence_needs_signed_channel_data_naming_a_user(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    auth = signing.channel_auth(KEY, SECRET, socket_id="1.1", channel="presence-room")
    refused = refusal(await client.subscribe("presence-room", auth=auth))
    assert refused == {
        "type": "AuthError",
        "error": "presence subscriptions need channel_data",
        "status": 401,
    }
    assert (
        refusal(await client.subscribe_signed("presence-room", {"user_info": {}}))["status"] == 400
    )


async def test_presence_roster_member_added_once_and_member_removed_after_the_last(
    config: SessionConfig, channels: Channels
) -> None:
    ann1, ben = connect(config, channels, "1.1"), connect(config, channels, "2.2")
    first = await ann1.subscribe_signed("presence-room", {"user_id": "ann", "user_info": {"n": 1}})
    assert succeeded(first, "presence-room") == {
        "presence": {"ids": ["ann"], "hash": {"ann": {"n": 1}}, "count": 1}
    }
    assert first.broadcasts == [
        Broadcast("presence-room", MEMBER_ADDED, '{"user_id":"ann","user_info":{"n":1}}', json=True)
    ]
    joined = await ben.subscribe_signed("presence-room", {"user_id": "ben"})
    # drift: the roster's order was the hub's join order on local, the user id's on API Gateway.
    assert succeeded(joined, "presence-room")["presence"]["ids"] == ["ann", "ben"]
    ann2 = connect(config, channels, "1.2")
    second_tab = await ann2.subscribe_signed("presence-room", {"user_id": "ann"})
    assert second_tab.broadcasts == []  # ann is present already
    assert (await ann1.send("pusher:unsubscribe", {"channel": "presence-room"})) == Outcome()
    left = await ann2.session.close()
    assert left.broadcasts == [
        Broadcast("presence-room", MEMBER_REMOVED, '{"user_id":"ann"}', json=True)
    ]
    assert ann2.state.channels == set()


async def test_unsubscribing_a_channel_never_joined_asks_nothing(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    await client.subscribe("news")
    client.port.calls.clear()
    assert await client.send("pusher:unsubscribe", {"channel": "sport"}) == Outcome()
    assert await client.send("pusher:unsubscribe", {"channel": 5}) == Outcome()
    assert client.port.calls == []


# -- sign-in and the server-to-user channel ----------------------------------------------------
async def test_signin_then_only_the_own_server_to_user_channel(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    assert refusal(await client.subscribe("#server-to-user-ann"))["status"] == 403
    signed = await client.sign_in("ann")
    frame = orjson.loads(signed.replies[0])
    assert frame["event"] == "pusher:signin_success"
    assert client.state.signed_in == "ann"
    assert "sign_in ann" in client.port.calls
    succeeded(await client.subscribe("#server-to-user-ann"), "#server-to-user-ann")
    assert refusal(await client.subscribe("#server-to-user-ben"))["status"] == 403


@pytest.mark.parametrize(
    "data",
    [
        {"auth": "unit-key:00", "user_data": '{"id":"ann"}'},
        {"user_data": '{"id":"ann"}'},
        {"auth": "unit-key:00"},
    ],
)
async def test_a_badly_signed_signin_is_refused_with_4009(
    config: SessionConfig, channels: Channels, data: dict[str, Any]
) -> None:
    client = connect(config, channels)
    assert error(await client.send("pusher:signin", data)) == {
        "message": "Invalid signin signature",
        "code": 4009,
    }
    assert client.state.signed_in is None


async def test_signed_user_data_without_an_id_is_refused(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    user_data = '{"user_info":{}}'
    auth = signing.user_auth(KEY, SECRET, socket_id="1.1", user_data=user_data)
    refused = error(await client.send("pusher:signin", {"auth": auth, "user_data": user_data}))
    assert refused["code"] == 4009


# -- client events -----------------------------------------------------------------------------
async def test_a_client_event_goes_to_the_others_with_the_presence_member(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    await client.subscribe_signed("presence-room", {"user_id": "ann"})
    await client.subscribe_signed("private-team")
    sent = await client.trigger("presence-room", "client-typing", {"on": True})
    assert (sent.replies, sent.close) == ([], None)
    assert sent.broadcasts == [
        Broadcast("presence-room", "client-typing", '{"on":true}', user_id="ann", json=True)
    ]
    assert (await client.trigger("private-team")).broadcasts == [
        Broadcast("private-team", "client-hi", "{}", json=True)
    ]
    # a string sent as data stays a string for SSE subscribers; the frame is the same
    assert (await client.trigger("private-team", data='{"n":1}')).broadcasts == [
        Broadcast("private-team", "client-hi", '{"n":1}', json=False)
    ]


async def test_a_client_event_is_checked_against_the_policys_schema(
    config: SessionConfig, channels: Channels
) -> None:
    # drift: the API Gateway handlers skipped the policy's JSON Schemas on client events.
    client = connect(config, channels)
    await client.subscribe_signed("private-team")
    refused = error(await client.trigger("private-team", "client-order", {"total": 3}))
    assert refused["message"].startswith("Client event rejected: data does not match the schema")
    assert refused["code"] is None
    assert (await client.trigger("private-team", "client-order", {"id": 1})).broadcasts != []


async def test_the_client_event_policy_decides_for_the_presence_member(
    config: SessionConfig, channels: Channels
) -> None:
    # drift: local asked the policy about the socket's first presence member, whichever channel
    # it was on; API Gateway about this channel's member. It is this channel's member.
    client = connect(config, channels)
    await client.subscribe_signed("presence-room", {"user_id": "ann"})
    await client.subscribe_signed("presence-other", {"user_id": "ben"})
    assert (await client.trigger("presence-room")).broadcasts != []
    refused = error(await client.trigger("presence-other"))
    assert refused["message"].startswith("Client event rejected: ")


async def test_client_events_are_checked_in_one_order(
    config: SessionConfig, channels: Channels, clock: Clock
) -> None:
    # drift: local asked "subscribed?" before "private or presence?", API Gateway the reverse,
    # and the rate limit came first on local, last on API Gateway: the same bad frame got
    # different errors. One order now (pusherproto/client_events.py).
    client = connect(config, channels)
    await client.subscribe("news")
    await client.subscribe_signed("private-quiet-1")
    await client.subscribe_signed("private-team")
    # 1. the kind of channel, before whether the connection is on it
    kind = "Client events are only for private and presence channels"
    assert error(await client.trigger("elsewhere"))["message"] == kind
    assert error(await client.trigger("news"))["message"] == kind
    assert error(await client.send("client-hi", {}))["message"] == kind  # no channel at all
    # 2. subscribed, before the event itself
    not_subscribed = "Client event rejected: not subscribed to that channel"
    assert error(await client.trigger("private-x", "client-" + "x" * 300))["message"] == (
        not_subscribed
    )
    # 3. the name, data and schema, before the policy
    too_long = error(await client.trigger("private-quiet-1", "client-" + "x" * 300))
    assert "event name is 307 characters" in too_long["message"]
    # 4. the policy
    assert "Client event rejected" in error(await client.trigger("private-quiet-1"))["message"]
    # 5. the rate, last: ten go out; past them a good event gets 4301, a bad one its own error
    for _ in range(10):
        assert (await client.trigger("private-team")).broadcasts != []
    assert error(await client.trigger("private-team"))["code"] == 4301
    assert error(await client.trigger("private-team", "client-order", {}))["code"] is None
    assert error(await client.trigger("private-quiet-1"))["code"] is None
    clock.now += 1
    assert (await client.trigger("private-team")).broadcasts != []


async def test_refused_client_events_use_up_none_of_the_rate(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    await client.subscribe_signed("private-team")
    for _ in range(20):
        error(await client.trigger("private-team", "client-order", {"no": "id"}))
    assert client.state.client_events == Window()
    assert [c for c in client.port.calls if c.startswith("count")] == []
    assert (await client.trigger("private-team")).broadcasts != []


async def test_the_servers_count_has_the_last_word_on_the_rate(
    config: SessionConfig, channels: Channels
) -> None:
    # API Gateway: another invocation for the same connection may have taken the last place.
    client = connect(config, channels)
    await client.subscribe_signed("private-team")
    client.port.vetoes.add(Counter.CLIENT_EVENTS)
    assert error(await client.trigger("private-team"))["code"] == 4301
    assert client.state.client_events == Window()


# -- a connection whose state is gone (API Gateway) --------------------------------------------
async def test_an_unknown_connection_is_told_to_reconnect_and_closed(
    config: SessionConfig, channels: Channels
) -> None:
    port = FakePort(channels, None)
    session = Session(config, port)
    for text in ('{"event":"pusher:subscribe","data":{"channel":"news"}}', "{"):
        outcome = await session.receive(text)
        assert error(outcome) == {"message": "Unknown connection: reconnect", "code": 4200}
        assert outcome.close == 4200
    assert await session.close() == Outcome()


async def test_a_connection_gone_while_subscribing_is_told_to_reconnect(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    client.port.gone = True
    assert (await client.subscribe("news")).close == 4200
    assert (await client.sign_in("ann")).close == 4200
    assert client.state.channels == set()
    assert client.state.signed_in is None


# -- the window both servers count in ------------------------------------------------------------
def test_a_window_opens_with_its_first_count_and_holds_limit_counts() -> None:
    window: Window | None = Window()
    counts = []
    for now in (10.0, 10.2, 10.9):
        assert window is not None
        window = window.counted(now, span=1.0, limit=2)
        counts.append(window)
    assert counts == [Window(10.0, 1), Window(10.0, 2), None]
    assert Window(10.0, 2).counted(11.0, span=1.0, limit=2) == Window(11.0, 1)
