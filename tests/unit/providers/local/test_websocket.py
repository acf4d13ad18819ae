"""The local provider's WebSocket endpoint, at the Pusher protocol 7 level, over a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from socket import SO_RCVBUF, SO_SNDBUF, SOL_SOCKET
from typing import TYPE_CHECKING, Any, TypeAlias

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.main import create_app
from app.relay import Relay
from core.policy import Policy
from providers.local import handshake
from providers.local import websocket as local_websocket
from providers.local.socket_server import PusherSocket
from providers.pusherproto import signing
from tests.servers import serve
from tests.unit.conftest import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from fastapi import FastAPI

    from core.settings import Settings
    from providers.local.provider import LocalProvider
    from tests.servers import LiveServer

SOCKET_ID = re.compile(r"\d+\.\d+")
FRAME_TIMEOUT = 3.0


class PusherClient:
    """A protocol-level Pusher client: JSON frames in and out, nothing hidden."""

    def __init__(self, ws: ClientConnection, settings: Settings) -> None:
        self.ws = ws
        self.settings = settings
        self.socket_id = ""

    async def next(self, within: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next frame from the server."""
        text = await asyncio.wait_for(self.ws.recv(), within)
        frame: dict[str, Any] = orjson.loads(text)
        return frame

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame."""
        await self.ws.send(orjson.dumps(frame).decode())

    async def closed_with(self, within: float = FRAME_TIMEOUT) -> tuple[int, list[dict[str, Any]]]:
        """Read until the server closes; return the close code and the frames read before."""
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(within):
            while True:
                try:
                    text = await self.ws.recv()
                except ConnectionClosed as closed:
                    received = closed.rcvd
                    break
                frames.append(orjson.loads(text))
        assert received is not None, "the server closed without a close frame"
        return received.code, frames

    def sign(self, channel: str, channel_data: str | None = None, socket_id: str = "") -> str:
        """The auth the relay would give this socket (or another) for a channel."""
        return signing.channel_auth(
            self.settings.app_key,
            self.settings.app_secret.get_secret_value(),
            socket_id=socket_id or self.socket_id,
            channel=channel,
            channel_data=channel_data,
        )

    async def subscribe(self, channel: str, **data: Any) -> dict[str, Any]:
        """Send pusher:subscribe and return the server's answer."""
        await self.send({"event": "pusher:subscribe", "data": {"channel": channel, **data}})
        return await self.next()

    async def subscribe_ok(self, channel: str, **data: Any) -> dict[str, Any]:
        """Subscribe and insist it succeeded; return the decoded subscription data."""
        answer = await self.subscribe(channel, **data)
        assert answer["event"] == "pusher_internal:subscription_succeeded", answer
        assert answer["channel"] == channel
        assert isinstance(answer["data"], str)
        decoded: dict[str, Any] = orjson.loads(answer["data"])
        return decoded


Opener: TypeAlias = "Callable[..., contextlib.AbstractAsyncContextManager[PusherClient]]"


def _opener(server: LiveServer, settings: Settings) -> Opener:
    @contextlib.asynccontextmanager
    async def open_client(
        path: str | None = None, *, established: bool = True
    ) -> AsyncIterator[PusherClient]:
        url = server.ws_url + (path or f"/app/{settings.app_key}?protocol=7")
        async with connect(url, ping_interval=None, open_timeout=5) as ws:
            client = PusherClient(ws, settings)
            if established:
                frame = await client.next()
                assert frame["event"] == "pusher:connection_established"
                client.socket_id = orjson.loads(frame["data"])["socket_id"]
            yield client

    return open_client


@pytest.fixture(params=["asgi", "lean"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every test runs on both transports of the one session: the ASGI route (any ASGI server)
    and the lean socket server `relay serve` installs (providers/local/socket_server.py)."""
    return str(request.param)


@pytest.fixture
async def live_server(relay_app: FastAPI, transport: str) -> AsyncIterator[LiveServer]:
    """The app served with the transport under test."""
    async with serve(relay_app, lean=transport == "lean") as server:
        yield server


@pytest.fixture
def relay_serve(transport: str) -> Callable[..., Any]:
    """Serve another app with the transport under test."""
    return functools.partial(serve, lean=transport == "lean")


@pytest.fixture
def open_client(live_server: LiveServer, relay_settings: Settings) -> Opener:
    """`async with open_client() as c:` a connected, established protocol client."""
    return _opener(live_server, relay_settings)


@pytest.fixture
async def publisher(
    live_server: LiveServer, relay_api_key: str
) -> AsyncIterator[Callable[..., Any]]:
    """Publish over the live server's REST API: `await publish("news", "e", data)`."""
    async with httpx.AsyncClient(base_url=live_server.http_url, timeout=5) as client:

        async def publish(channel: str, name: str, data: Any, socket_id: str | None = None) -> None:
            event: dict[str, Any] = {"name": name, "channel": channel, "data": data}
            if socket_id is not None:
                event["socket_id"] = socket_id
            response = await client.post(
                "/v1/events", json=event, headers={"X-API-Key": relay_api_key}
            )
            assert response.status_code == 200, response.text

        yield publish


async def test_connection_established_comes_first(
    open_client: Opener, relay_settings: Settings
) -> None:
    async with open_client(established=False) as client:
        frame = await client.next()
        assert frame["event"] == "pusher:connection_established"
        assert isinstance(frame["data"], str)
        data = orjson.loads(frame["data"])
        assert SOCKET_ID.fullmatch(data["socket_id"])
        assert data["activity_timeout"] == relay_settings.activity_timeout_seconds


async def test_every_connection_gets_its_own_socket_id(open_client: Opener) -> None:
    async with open_client() as a, open_client() as b:
        assert a.socket_id != b.socket_id


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/app/wrong-key?protocol=7", 4001),
        ("/app/unit-key", 4008),
        ("/app/unit-key?protocol=3", 4007),
        ("/app/unit-key?protocol=8", 4007),
        ("/app/unit-key?protocol=seven", 4006),
    ],
)
async def test_refused_connections_get_an_error_then_the_same_close_code(
    open_client: Opener, path: str, code: int
) -> None:
    async with open_client(path, established=False) as client:
        frame = await client.next()
        assert frame["event"] == "pusher:error"
        assert frame["data"]["code"] == code
        assert isinstance(frame["data"]["message"], str)
        close_code, rest = await client.closed_with()
        assert close_code == code
        assert rest == []


async def test_ping_gets_pong(open_client: Opener) -> None:
    async with open_client() as client:
        await client.send({"event": "pusher:ping", "data": {}})
        assert (await client.next())["event"] == "pusher:pong"
        # Some clients encode protocol data twice.
        await client.send({"event": "pusher:ping", "data": "{}"})
        assert (await client.next())["event"] == "pusher:pong"


async def test_public_subscription_succeeds_and_receives_events_as_strings(
    open_client: Opener, publisher: Callable[..., Any]
) -> None:
    async with open_client() as client:
        assert await client.subscribe_ok("news") == {}
        await publisher("news", "update", {"headline": "hello"})
        frame = await client.next()
        assert frame == {"event": "update", "channel": "news", "data": '{"headline":"hello"}'}
        await publisher("news", "update", "already a string")
        assert (await client.next())["data"] == "already a string"


async def test_private_subscription_with_a_valid_signature(
    open_client: Opener, publisher: Callable[..., Any]
) -> None:
    async with open_client() as client:
        await client.subscribe_ok("private-room", auth=client.sign("private-room"))
        await publisher("private-room", "update", [1, 2, 3])
        assert await client.next() == {
            "event": "update",
            "channel": "private-room",
            "data": "[1,2,3]",
        }


async def test_signature_from_the_auth_endpoint_is_accepted(
    open_client: Opener, live_server: LiveServer, relay_token: Callable[..., str]
) -> None:
    async with open_client() as client, httpx.AsyncClient(base_url=live_server.http_url) as http:
        response = await http.post(
            "/auth/channel",
            data={"socket_id": client.socket_id, "channel_name": "presence-room"},
            headers={"Authorization": f"Bearer {relay_token('alice', name='Alice')}"},
        )
        assert response.status_code == 200
        data = await client.subscribe_ok("presence-room", **response.json())
        assert data["presence"]["hash"] == {"alice": {"name": "Alice"}}


def _bad_auths(client: PusherClient, channel: str) -> dict[str, Any]:
    good = client.sign(channel)
    other_socket = "1.2" if client.socket_id != "1.2" else "3.4"
    wrong_secret = signing.channel_auth(
        "unit-key", "another-secret-0123456789", socket_id=client.socket_id, channel=channel
    )
    return {
        "garbage": "unit-key:deadbeef",
        "truncated": good[:-1],
        "other socket": client.sign(channel, socket_id=other_socket),
        "other channel": client.sign("private-elsewhere"),
        "wrong key prefix": "other-key:" + good.partition(":")[2],
        "wrong secret": wrong_secret,
        "not a string": 12345,
        "missing": None,
    }


async def test_private_subscription_with_a_bad_signature_is_refused_and_gets_nothing(
    open_client: Opener, publisher: Callable[..., Any], relay_provider: LocalProvider
) -> None:
    async with open_client() as client:
        for label, auth in _bad_auths(client, "private-room").items():
            extra = {} if auth is None else {"auth": auth}
            answer = await client.subscribe("private-room", **extra)
            assert answer["event"] == "pusher:subscription_error", label
            assert answer["channel"] == "private-room"
            assert answer["data"]["status"] == 401, label
        await client.subscribe_ok("news")
        # Had the refused subscription taken, its event would arrive before the public one.
        await publisher("private-room", "leak", "secret")
        await publisher("news", "marker", "m")
        assert await client.next() == {"event": "marker", "channel": "news", "data": "m"}
        assert relay_provider.hub.subscriber_count("private-room") == 0


async def test_presence_subscription_gets_the_roster_and_announces_the_member(
    open_client: Opener,
) -> None:
    async with open_client() as first, open_client() as second:
        alice = orjson.dumps({"user_id": "alice", "user_info": {"name": "Alice"}}).decode()
        data = await first.subscribe_ok(
            "presence-room", auth=first.sign("presence-room", alice), channel_data=alice
        )
        assert data == {
            "presence": {"ids": ["alice"], "hash": {"alice": {"name": "Alice"}}, "count": 1}
        }
        bob = orjson.dumps({"user_id": "bob", "user_info": {}}).decode()
        data = await second.subscribe_ok(
            "presence-room", auth=second.sign("presence-room", bob), channel_data=bob
        )
        assert data["presence"]["count"] == 2
        assert data["presence"]["ids"] == ["alice", "bob"]
        added = await first.next()
        assert added["event"] == "pusher_internal:member_added"
        assert added["channel"] == "presence-room"
        assert orjson.loads(added["data"]) == {"user_id": "bob", "user_info": {}}
        await second.ws.close()
        removed = await first.next()
        assert removed["event"] == "pusher_internal:member_removed"
        assert orjson.loads(removed["data"]) == {"user_id": "bob"}


async def test_presence_channel_data_altered_after_signing_is_refused(
    open_client: Opener, relay_provider: LocalProvider
) -> None:
    async with open_client() as client:
        signed = orjson.dumps({"user_id": "mallory", "user_info": {}}).decode()
        forged = orjson.dumps({"user_id": "admin", "user_info": {}}).decode()
        answer = await client.subscribe(
            "presence-room", auth=client.sign("presence-room", signed), channel_data=forged
        )
        assert answer["event"] == "pusher:subscription_error"
        assert answer["data"]["status"] == 401
        assert relay_provider.hub.members("presence-room") == []


async def test_presence_without_channel_data_is_refused(open_client: Opener) -> None:
    async with open_client() as client:
        answer = await client.subscribe("presence-room", auth=client.sign("presence-room"))
        assert answer["event"] == "pusher:subscription_error"
        assert answer["data"]["status"] == 401


async def test_signed_presence_data_without_a_user_id_is_refused(open_client: Opener) -> None:
    async with open_client() as client:
        data = orjson.dumps({"user_info": {}}).decode()
        answer = await client.subscribe(
            "presence-room", auth=client.sign("presence-room", data), channel_data=data
        )
        assert answer["event"] == "pusher:subscription_error"
        assert answer["data"]["status"] == 400


@pytest.mark.parametrize(
    "text", ["{not json", "[]", '"pusher:ping"', '{"data": {}}', '{"event": 5}']
)
async def test_invalid_frame_gets_an_error_and_the_connection_stays_open(
    open_client: Opener, text: str
) -> None:
    async with open_client() as client:
        await client.ws.send(text)
        error = await client.next()
        assert error["event"] == "pusher:error"
        assert error["data"]["code"] is None
        await client.send({"event": "pusher:ping", "data": {}})
        assert (await client.next())["event"] == "pusher:pong"


@pytest.mark.parametrize(
    "channel", ["x" * 165, "private-" + "x" * 160, "bad channel", "", "private-encrypted-x"]
)
async def test_malformed_channel_subscription_is_a_400_error(
    open_client: Opener, channel: str
) -> None:
    async with open_client() as client:
        answer = await client.subscribe(channel, auth="unit-key:whatever")
        assert answer["event"] == "pusher:subscription_error"
        assert answer["data"]["status"] == 400
        assert answer["channel"] == channel


async def test_duplicate_subscription_changes_nothing(
    open_client: Opener, publisher: Callable[..., Any]
) -> None:
    async with open_client() as client:
        await client.subscribe_ok("news")
        await client.send({"event": "pusher:subscribe", "data": {"channel": "news"}})
        await publisher("news", "once", "x")
        assert (await client.next())["event"] == "once"
        await client.send({"event": "pusher:ping", "data": {}})
        assert (await client.next())["event"] == "pusher:pong"  # no second copy before it


async def test_unsubscribe_stops_deliveries(
    open_client: Opener, publisher: Callable[..., Any]
) -> None:
    async with open_client() as client:
        await client.subscribe_ok("news")
        await client.subscribe_ok("sport")
        await client.send({"event": "pusher:unsubscribe", "data": {"channel": "news"}})
        await client.send({"event": "pusher:ping", "data": {}})
        assert (await client.next())["event"] == "pusher:pong"
        await publisher("news", "dropped", "x")
        await publisher("sport", "kept", "x")
        assert (await client.next())["event"] == "kept"


async def test_client_event_on_a_public_channel_is_refused(
    open_client: Opener,
) -> None:
    async with open_client() as sender, open_client() as receiver:
        await sender.subscribe_ok("news")
        await receiver.subscribe_ok("news")
        await sender.send({"event": "client-hi", "channel": "news", "data": {}})
        assert (await sender.next())["event"] == "pusher:error"
        await receiver.send({"event": "pusher:ping", "data": {}})
        assert (await receiver.next())["event"] == "pusher:pong"


async def test_client_event_on_an_unsubscribed_channel_is_refused(open_client: Opener) -> None:
    async with open_client() as client:
        await client.send({"event": "client-hi", "channel": "private-room", "data": {}})
        error = await client.next()
        assert error["event"] == "pusher:error"
        assert "not subscribed" in error["data"]["message"]


async def test_client_events_the_default_policy_grants_subscribers_reach_the_others_only(
    open_client: Opener,
) -> None:
    # As a Pusher app with client events enabled: neither socket signed in (Echo's never does).
    async with open_client() as sender, open_client() as receiver:
        for c in (sender, receiver):
            await c.subscribe_ok("private-room", auth=c.sign("private-room"))
        await sender.send({"event": "client-hi", "channel": "private-room", "data": {"n": 1}})
        frame = await receiver.next()
        assert (frame["event"], frame["channel"]) == ("client-hi", "private-room")
        assert orjson.loads(frame["data"]) == {"n": 1}
        assert "user_id" not in frame  # added on presence channels only
        await sender.send({"event": "pusher:ping", "data": {}})
        assert (await sender.next())["event"] == "pusher:pong"  # never echoed to the sender


QUIET_POLICY = """
[[rule]]
pattern = "private-{name}"
subscribe = ["user"]
publish = ["backend"]
client_events = []
"""


async def test_client_events_a_policy_turns_off_are_refused(
    relay_settings: Settings, relay_serve: Callable[..., Any]
) -> None:
    policy = Policy.from_toml(QUIET_POLICY, source="quiet test policy")
    app = create_app(relay=Relay.build(relay_settings, policy=policy))
    async with relay_serve(app) as server:
        open_client = _opener(server, relay_settings)
        async with open_client() as sender, open_client() as receiver:
            for c in (sender, receiver):
                await c.subscribe_ok("private-room", auth=c.sign("private-room"))
            await sender.send({"event": "client-hi", "channel": "private-room", "data": {}})
            error = await sender.next()
            assert error["event"] == "pusher:error"
            assert "grants client_event to nobody" in error["data"]["message"]
            await receiver.send({"event": "pusher:ping", "data": {}})
            assert (await receiver.next())["event"] == "pusher:pong"


CHAT_POLICY = """
[[rule]]
pattern = "private-chat-{room}"
subscribe = ["user"]
publish = ["backend"]
client_events = ["anyone"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
publish = ["backend"]
"""


@pytest.fixture
def chat_app(relay_settings: Settings) -> FastAPI:
    policy = Policy.from_toml(CHAT_POLICY, source="chat test policy")
    return create_app(relay=Relay.build(relay_settings, policy=policy))


async def test_client_events_are_relayed_then_rate_limited_after_ten_per_second(
    chat_app: FastAPI, relay_serve: Callable[..., Any], relay_settings: Settings
) -> None:
    channel = "private-chat-1"
    async with relay_serve(chat_app) as server:
        open_client = _opener(server, relay_settings)
        async with open_client() as sender, open_client() as receiver:
            for c in (sender, receiver):
                await c.subscribe_ok(channel, auth=c.sign(channel))
            for i in range(11):
                await sender.send({"event": "client-msg", "channel": channel, "data": {"n": i}})
            error = await sender.next()
            assert error["event"] == "pusher:error"
            assert error["data"]["code"] == 4301
            received = [await receiver.next() for _ in range(10)]
            assert [orjson.loads(f["data"])["n"] for f in received] == list(range(10))
            assert all(f["event"] == "client-msg" and f["channel"] == channel for f in received)
            await receiver.send({"event": "pusher:ping", "data": {}})
            assert (await receiver.next())["event"] == "pusher:pong"  # the 11th never came


async def test_rest_event_reaches_the_socket_with_data_as_a_string(
    open_client: Opener, publisher: Callable[..., Any]
) -> None:
    async with open_client() as client:
        await client.subscribe_ok("news")
        await publisher("news", "nested", {"a": {"b": [1, "two"]}})
        frame = await client.next()
        assert isinstance(frame["data"], str)
        assert orjson.loads(frame["data"]) == {"a": {"b": [1, "two"]}}


async def test_rest_publish_with_socket_id_skips_that_socket(
    open_client: Opener, publisher: Callable[..., Any]
) -> None:
    async with open_client() as origin, open_client() as other:
        await origin.subscribe_ok("news")
        await other.subscribe_ok("news")
        await publisher("news", "echo", "x", socket_id=origin.socket_id)
        await publisher("news", "marker", "m")
        assert (await other.next())["event"] == "echo"
        assert (await other.next())["event"] == "marker"
        assert (await origin.next())["event"] == "marker"


async def test_signin_with_a_valid_signature(open_client: Opener, relay_settings: Settings) -> None:
    async with open_client() as client:
        user_data = orjson.dumps({"id": "alice", "user_info": {}}).decode()
        auth = signing.user_auth(
            relay_settings.app_key,
            relay_settings.app_secret.get_secret_value(),
            socket_id=client.socket_id,
            user_data=user_data,
        )
        await client.send(
            {"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}
        )
        frame = await client.next()
        assert frame["event"] == "pusher:signin_success"
        assert orjson.loads(frame["data"]) == {"user_data": user_data}


async def test_signin_with_a_bad_signature_is_refused(open_client: Opener) -> None:
    async with open_client() as client:
        user_data = orjson.dumps({"id": "alice", "user_info": {}}).decode()
        await client.send(
            {"event": "pusher:signin", "data": {"auth": "unit-key:00", "user_data": user_data}}
        )
        frame = await client.next()
        assert frame["event"] == "pusher:error"
        assert frame["data"]["code"] == 4009


async def test_server_pings_after_inactivity_and_closes_without_pong(
    relay_settings: Settings, relay_serve: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settings refuse an activity timeout under 5 s; a copy skips validation, for speed only.
    fast = relay_settings.model_copy(update={"activity_timeout_seconds": 1})
    monkeypatch.setattr(handshake, "PONG_TIMEOUT_SECONDS", 0.3)
    async with (
        relay_serve(create_app(fast)) as server,
        _opener(server, fast)(established=False) as client,
    ):
        established = await client.next()
        assert orjson.loads(established["data"])["activity_timeout"] == 1
        started = time.monotonic()
        assert (await client.next(within=3))["event"] == "pusher:ping"
        assert time.monotonic() - started >= 0.8
        await client.send({"event": "pusher:pong", "data": {}})
        # Answered: the next ping comes after another quiet second, then no pong closes it.
        assert (await client.next(within=3))["event"] == "pusher:ping"
        code, frames = await client.closed_with(within=3)
        assert code == 4201
        assert frames == []


async def test_activity_resets_the_ping_timer(
    relay_settings: Settings, relay_serve: Callable[..., Any]
) -> None:
    fast = relay_settings.model_copy(update={"activity_timeout_seconds": 1})
    async with relay_serve(create_app(fast)) as server, _opener(server, fast)() as client:
        for _ in range(2):  # 1.2 s in all: a timer that was not reset would have pinged
            await asyncio.sleep(0.6)
            await client.send({"event": "pusher:ping", "data": {}})
            assert (await client.next())["event"] == "pusher:pong"


async def test_slow_consumer_is_disconnected_with_4100_not_buffered(
    relay_settings: Settings,
    relay_serve: Callable[..., Any],
    relay_api_key: str,
    transport: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = relay_settings.model_copy(update={"send_buffer_frames": 10})
    app = create_app(small)
    provider: LocalProvider = app.state.relay.provider
    async with (
        relay_serve(app) as server,
        _opener(server, small)() as client,
        httpx.AsyncClient(base_url=server.http_url, timeout=10) as http,
    ):
        await client.subscribe_ok("firehose")
        (socket,) = provider.connections
        peak = 0
        if transport == "asgi":  # the ASGI transport's bounded queue
            assert isinstance(socket, local_websocket.PusherConnection)
            queue = socket.outbox._queue
            assert queue.maxsize == 10
            original = queue.put_nowait

            def tracking_put(item: str | None) -> None:
                nonlocal peak
                original(item)
                peak = max(peak, queue.qsize())

            queue.put_nowait = tracking_put  # type: ignore[method-assign]
        else:  # the lean server's count of frames written past the transport's high-water mark
            assert isinstance(socket, PusherSocket)
            # Small kernel buffers on both ends, so that what the client does not read backs up
            # into the server's transport within a few hundred kB rather than megabytes.
            assert socket.transport is not None
            for end in (socket.transport, client.ws.transport):
                sock = end.get_extra_info("socket")
                sock.setsockopt(SOL_SOCKET, SO_SNDBUF, 4096)
                sock.setsockopt(SOL_SOCKET, SO_RCVBUF, 4096)
            original_write = PusherSocket._write

            def tracking_write(self: PusherSocket, data: bytes) -> None:
                nonlocal peak
                original_write(self, data)
                peak = max(peak, self._backlog)

            monkeypatch.setattr(PusherSocket, "_write", tracking_write)
        batch = [
            {"name": "big", "channel": "firehose", "data": f"{i:05d}" + "x" * 10_000}
            for i in range(20)
        ]
        published = 0
        for _ in range(15):  # 300 events of 10 kB, none of them read yet
            response = await http.post(
                "/v1/batch", json={"batch": batch}, headers={"X-API-Key": relay_api_key}
            )
            assert response.status_code == 200
            published += len(batch)
        assert peak <= 11  # the frame past the bound is the one that closes
        code, frames = await client.closed_with(within=5)
        assert code == 4100
        assert len(frames) < published
        await eventually(lambda: not provider.connections)
        assert provider.hub.subscriber_count("firehose") == 0


async def test_binary_frames_are_read_as_utf8_json_and_garbage_is_refused(
    open_client: Opener, relay_provider: LocalProvider
) -> None:
    async with open_client() as client:
        await client.subscribe_ok("news")
        # Pusher clients send text; a UTF-8 JSON binary frame is taken as the same frame.
        await client.ws.send(b'{"event":"pusher:ping","data":{}}')
        assert (await client.next())["event"] == "pusher:pong"
        await client.ws.send(b"\xff\xfe not utf-8")
        error = await client.next()
        assert error["event"] == "pusher:error"
        assert "UTF-8" in error["data"]["message"]
        # The connection and its subscription survive the bad frame.
        await client.ws.send(b'{"event":"pusher:ping","data":{}}')
        assert (await client.next())["event"] == "pusher:pong"
        assert relay_provider.hub.subscriber_count("news") == 1
