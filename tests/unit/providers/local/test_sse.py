"""GET /v1/stream: server-sent events with heartbeats, policy checks and Last-Event-ID resume.

The tests over a live server run on both drivers: "lean", the connection lent by `relay serve`'s
HTTP protocol (providers/local/sse_transport.py), and "asgi", a streaming response under plain
uvicorn. tests/unit/providers/local/test_sse_transport.py tests what only the lean one does."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, cast

import httpx
import orjson
import pytest

from providers.local.hub import Delivery
from providers.local.sse import SseStream
from tests.unit.conftest import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable

    from fastapi import FastAPI

    from core.settings import Settings
    from providers.local.provider import LocalProvider
    from tests.servers import LiveServer

PROBLEM = "urn:realtime-relay:problem:"


class SseReader:
    """Reads one server-sent-events response block by block."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def block(self, within: float = 3.0) -> dict[str, str]:
        """The next block: its fields (`id`, `data`, `retry`) or `comment` for `: ...` lines."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(within):
            while True:
                line = await anext(self._lines)
                if line == "":
                    if fields:
                        return fields
                    continue
                name, _, value = line.partition(":")
                fields["comment" if name == "" else name] = value.removeprefix(" ")

    async def event(self, within: float = 3.0) -> tuple[str, dict[str, Any]]:
        """The next event block's id and decoded data, skipping heartbeats."""
        while True:
            block = await self.block(within)
            if "comment" in block:
                continue
            data: dict[str, Any] = orjson.loads(block["data"])
            return block.get("id", ""), data


@pytest.fixture(params=["lean", "asgi"])
async def live_server(
    relay_app: FastAPI, relay_serve: Callable[..., Any], request: pytest.FixtureRequest
) -> AsyncIterator[LiveServer]:
    """`relay_app` served with its streams on lent connections, then as streaming responses."""
    async with relay_serve(relay_app, guarded=request.param == "lean") as server:
        yield server


@pytest.fixture
async def stream_client(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.http_url, timeout=5) as client:
        yield client


@pytest.fixture
def open_stream(
    stream_client: httpx.AsyncClient,
) -> Callable[..., contextlib.AbstractAsyncContextManager[SseReader]]:
    """`async with open_stream("news", last_event_id=..., token=...) as reader:`."""

    @contextlib.asynccontextmanager
    async def open_(
        *channels: str, last_event_id: str | None = None, token: str | None = None
    ) -> AsyncIterator[SseReader]:
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("channel", c) for c in channels
        ]
        if token is not None:
            params.append(("token", token))
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        async with stream_client.stream(
            "GET", "/v1/stream", params=params, headers=headers
        ) as response:
            assert response.status_code == 200
            reader = SseReader(response)
            hello = await reader.block()
            assert hello["retry"] == "3000"
            assert orjson.loads(hello["data"])["type"] == "connected"
            yield reader

    return open_


@pytest.fixture
def publish(
    relay_provider: LocalProvider,
) -> Callable[..., Delivery]:
    """Publish straight into the hub the live server serves; returns the delivery."""

    def publish_(channel: str, name: str, data: str = "x") -> Delivery:
        delivery = Delivery(name, channel, data)
        relay_provider.broadcast(delivery)
        return delivery

    return publish_


async def test_first_message_is_connected(stream_client: httpx.AsyncClient) -> None:
    async with stream_client.stream(
        "GET", "/v1/stream", params=[("channel", "news"), ("channel", "sport")]
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        reader = SseReader(response)
        hello = await reader.block()
        assert hello["retry"] == "3000"
        data = orjson.loads(hello["data"])
        assert data["type"] == "connected"
        assert data["channels"] == ["news", "sport"]
        assert isinstance(data["socket_id"], str)


async def test_event_arrives_with_an_id(
    open_stream: Callable[..., Any],
    relay_provider: LocalProvider,
    http: httpx.AsyncClient,
    relay_api_key: str,
) -> None:
    async with open_stream("news") as reader:
        response = await http.post(
            "/v1/events",
            json={"name": "update", "channel": "news", "data": {"a": 1}},
            headers={"X-API-Key": relay_api_key},
        )
        assert response.status_code == 200
        event_id, data = await reader.event()
        assert data == {"type": "event", "channel": "news", "event": "update", "data": {"a": 1}}
        # news: the policy grants history, so a published event carries its history id
        epoch, _, seq = event_id.partition(":")
        assert len(epoch) == 8
        assert seq == "1"


@pytest.mark.parametrize(
    ("published", "pusher_data"),
    [
        ({"text": "hi"}, '{"text":"hi"}'),
        ([1, "two"], '[1,"two"]'),
        (3, "3"),
        (None, "null"),
        ("hi", "hi"),
        ('{"n":1}', '{"n":1}'),  # a string that reads as JSON stays a string
        ("", ""),
    ],
    ids=["object", "list", "number", "null", "string", "json-looking-string", "empty-string"],
)
async def test_data_arrives_as_published_and_the_pusher_frame_keeps_a_string(
    open_stream: Callable[..., Any],
    http: httpx.AsyncClient,
    relay_api_key: str,
    relay_listen: Callable[..., Any],
    published: Any,
    pusher_data: str,
) -> None:
    socket = relay_listen("news")  # what a WebSocket subscriber is handed
    async with open_stream("news") as reader:
        response = await http.post(
            "/v1/events",
            json={"name": "update", "channel": "news", "data": published},
            headers={"X-API-Key": relay_api_key},
        )
        assert response.status_code == 200, response.text
        _, data = await reader.event()
        assert data["data"] == published
        assert type(data["data"]) is type(published)
    (delivery,) = socket.deliveries
    assert orjson.loads(delivery.pusher_frame()) == {
        "event": "update",
        "channel": "news",
        "data": pusher_data,
    }


async def test_heartbeat_comment_keeps_the_stream_open(open_stream: Callable[..., Any]) -> None:
    async with open_stream("news") as reader:
        block = await reader.block(within=2)
        assert block == {"comment": "heartbeat"}
        block = await reader.block(within=2)
        assert block == {"comment": "heartbeat"}


async def test_last_event_id_replays_exactly_the_missed_events(
    open_stream: Callable[..., Any], publish: Callable[..., Delivery]
) -> None:
    async with open_stream("news") as reader:
        for name in ("one", "two", "three"):
            publish("news", name)
        first_id, first = await reader.event()
        assert first["event"] == "one"
    async with open_stream("news", last_event_id=first_id) as reader:
        replayed = [await reader.event() for _ in range(2)]
        assert [d["event"] for _, d in replayed] == ["two", "three"]
        publish("news", "four")
        live_id, live = await reader.event()
        assert live["event"] == "four"
        ids = [first_id, *(i for i, _ in replayed), live_id]
        assert len(set(ids)) == 4
        seqs = [int(i.partition("-")[2]) for i in ids]
        assert seqs == sorted(seqs)


async def test_resume_merges_several_channels_in_order(
    open_stream: Callable[..., Any], publish: Callable[..., Delivery], relay_provider: LocalProvider
) -> None:
    start = publish("other", "start")
    publish("a", "a1")
    publish("b", "b1")
    publish("a", "a2")
    publish("c", "not-asked-for")
    async with open_stream("a", "b", last_event_id=relay_provider.hub.event_id(start)) as reader:
        replayed = [await reader.event() for _ in range(3)]
        assert [d["event"] for _, d in replayed] == ["a1", "b1", "a2"]
        publish("b", "b2")
        assert (await reader.event())[1]["event"] == "b2"


@pytest.mark.parametrize("last_event_id", ["deadbeef-1", "0badf00d-12345", "OtherEpoch-0"])
async def test_ids_from_another_epoch_replay_nothing(
    open_stream: Callable[..., Any],
    publish: Callable[..., Delivery],
    relay_provider: LocalProvider,
    last_event_id: str,
) -> None:
    for name in ("one", "two"):
        publish("news", name)
    assert not last_event_id.startswith(relay_provider.hub.epoch + "-")
    async with open_stream("news", last_event_id=last_event_id) as reader:
        publish("news", "live")
        _, data = await reader.event()
        assert data["event"] == "live"


@pytest.mark.parametrize("last_event_id", ["garbage", "-1", "EPOCH-x", "EPOCH-\u00b2"])
async def test_malformed_last_event_id_is_400_before_the_stream(
    stream_client: httpx.AsyncClient, relay_provider: LocalProvider, last_event_id: str
) -> None:
    last_event_id = last_event_id.replace("EPOCH", relay_provider.hub.epoch)
    async with stream_client.stream(
        "GET",
        "/v1/stream",
        params={"channel": "news"},
        headers={b"Last-Event-ID": last_event_id.encode("latin-1")},  # "\u00b2" is byte 0xb2
    ) as response:
        assert response.status_code == 400
        await response.aread()
    assert response.json()["type"] == PROBLEM + "invalid-request"
    assert relay_provider.hub.subscriber_count("news") == 0


async def test_private_channel_with_the_right_users_token(
    open_stream: Callable[..., Any],
    publish: Callable[..., Delivery],
    relay_token: Callable[..., str],
) -> None:
    async with open_stream("private-user-alice", token=relay_token("alice")) as reader:
        publish("private-user-alice", "note", "for alice")
        _, data = await reader.event()
        assert data["event"] == "note"
        assert data["data"] == "for alice"


async def test_private_channel_with_the_wrong_users_token_is_403(
    stream_client: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await stream_client.get(
        "/v1/stream", params={"channel": "private-user-alice", "token": relay_token("bob")}
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == PROBLEM + "forbidden"


async def test_private_channel_without_a_token_is_401(stream_client: httpx.AsyncClient) -> None:
    response = await stream_client.get("/v1/stream", params={"channel": "private-room"})
    assert response.status_code == 401
    assert response.json()["type"] == PROBLEM + "unauthenticated"


async def test_one_refused_channel_refuses_the_whole_stream(
    stream_client: httpx.AsyncClient, relay_token: Callable[..., str], relay_provider: LocalProvider
) -> None:
    response = await stream_client.get(
        "/v1/stream",
        params=[
            ("channel", "news"),
            ("channel", "private-user-alice"),
            ("token", relay_token("bob")),
        ],
    )
    assert response.status_code == 403
    assert relay_provider.hub.subscriber_count("news") == 0


async def test_bad_token_is_401_and_not_echoed(stream_client: httpx.AsyncClient) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.Zm9yZ2VkLXNpZ25hdHVyZQ"
    response = await stream_client.get("/v1/stream", params={"channel": "news", "token": token})
    assert response.status_code == 401
    assert response.json()["type"] == PROBLEM + "invalid-token"
    assert "Zm9yZ2VkLXNpZ25hdHVyZQ" not in response.text


async def test_malformed_or_missing_channel_is_refused(stream_client: httpx.AsyncClient) -> None:
    bad = await stream_client.get("/v1/stream", params={"channel": "bad channel"})
    assert bad.status_code == 400
    assert bad.json()["type"] == PROBLEM + "invalid-channel"
    missing = await stream_client.get("/v1/stream")
    assert missing.status_code == 422
    too_many = await stream_client.get(
        "/v1/stream", params=[("channel", f"c{i}") for i in range(101)]
    )
    assert too_many.status_code == 400
    assert too_many.json()["type"] == PROBLEM + "too-many-items"
    assert too_many.json()["limit"] == 100


async def test_presence_bookkeeping_is_not_streamed(
    open_stream: Callable[..., Any],
    publish: Callable[..., Delivery],
    relay_provider: LocalProvider,
    relay_token: Callable[..., str],
    relay_listen: Callable[..., Any],
) -> None:
    from core.provider import PresenceData

    async with open_stream("presence-room", token=relay_token("alice")) as reader:
        relay_provider.hub.subscribe(relay_listen(), "presence-room", PresenceData("bob", {}))
        publish("presence-room", "after")
        _, data = await reader.event()
        assert data["event"] == "after"


async def test_disconnecting_removes_the_hub_subscriber(
    open_stream: Callable[..., Any], relay_provider: LocalProvider
) -> None:
    hub = relay_provider.hub
    async with open_stream("news", "sport"):
        assert hub.subscriber_count("news") == 1
        assert hub.subscriber_count("sport") == 1
    await eventually(lambda: not (hub.subscriber_count("news") or hub.subscriber_count("sport")))
    assert hub.subscriber_count("news") == 0
    assert hub.subscriber_count("sport") == 0


# -- the stream object on its own -------------------------------------------------------------


def _small_buffer(relay_app: FastAPI, relay_settings: Settings) -> LocalProvider:
    provider: LocalProvider = relay_app.state.relay.provider
    provider.settings = relay_settings.model_copy(update={"send_buffer_frames": 10})
    return provider


async def _drain(frames: AsyncIterator[bytes], *, until: str | None = None) -> list[str]:
    """The data of each event frame, until the stream ends (or an event with data `until`)."""
    out: list[str] = []
    async with asyncio.timeout(2):
        async for frame in frames:
            if frame.startswith(b":"):
                continue
            data = orjson.loads(frame.split(b"\n")[1].removeprefix(b"data: "))["data"]
            if data == until:
                break
            out.append(data)
    return out


def _last_id(provider: LocalProvider, data: str) -> str:
    (delivery,) = [d for d in provider.hub.replay("news", 0) if d.data == data]
    return provider.hub.event_id(delivery)


async def test_slow_sse_consumer_is_cut_off_rather_than_buffered(
    relay_app: FastAPI, relay_settings: Settings
) -> None:
    provider = _small_buffer(relay_app, relay_settings)
    stream = SseStream(provider, ["news"], None)
    frames = stream.frames()
    await anext(frames)  # connected; now subscribed
    for i in range(50):
        provider.broadcast(Delivery("e", "news", str(i)))
    assert stream not in provider.streams  # cut off past the bound, at once
    received = await _drain(frames)  # the stream ends: the client must reconnect
    assert len(received) <= 10
    assert provider.hub.subscriber_count("news") == 0


async def test_slow_sse_consumer_can_resume_without_a_gap(
    relay_app: FastAPI, relay_settings: Settings
) -> None:
    provider = _small_buffer(relay_app, relay_settings)
    stream = SseStream(provider, ["news"], None)
    frames = stream.frames()
    await anext(frames)
    for i in range(12):
        provider.broadcast(Delivery("e", "news", str(i)))
    received = await _drain(frames)
    assert received, "nothing was sent before the cut-off"
    resumed = SseStream(provider, ["news"], _last_id(provider, received[-1]))
    more = cast("AsyncGenerator[bytes, None]", resumed.frames())
    await anext(more)  # connected, and the replay is queued up behind it
    provider.broadcast(Delivery("e", "news", "end"))
    replayed = await _drain(more, until="end")
    await more.aclose()
    assert received + replayed == [str(i) for i in range(12)]


async def test_stream_object_replays_after_a_known_id(relay_provider: LocalProvider) -> None:
    first = Delivery("e", "news", "0")
    relay_provider.broadcast(first)
    relay_provider.broadcast(Delivery("e", "news", "1"))
    stream = SseStream(relay_provider, ["news"], relay_provider.hub.event_id(first))
    frames = cast("AsyncGenerator[bytes, None]", stream.frames())
    await anext(frames)
    frame = await anext(frames)
    assert frame.startswith(b"id: " + relay_provider.hub.epoch.encode())
    assert orjson.loads(frame.split(b"\n")[1].removeprefix(b"data: "))["data"] == "1"
    await frames.aclose()
    assert relay_provider.hub.subscriber_count("news") == 0


class _Wire:
    """A wire that remembers what the stream wrote."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.finished: bool | None = None  # cut?

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def push(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True

    def heartbeat(self) -> None:
        self.frames.append(b": heartbeat\n\n")

    def finish(self, *, cut: bool) -> None:
        self.finished = cut


async def test_a_stream_opened_while_draining_ends_once_open(relay_provider: LocalProvider) -> None:
    relay_provider.broadcast(Delivery("e", "news", "missed"))
    stream = SseStream(relay_provider, ["news"], f"{relay_provider.hub.epoch}-0")
    relay_provider.drain()  # after the route's check: the stream still opens, then ends
    wire = _Wire()
    await stream.open(wire)
    hello, missed, retry = wire.frames
    assert orjson.loads(hello.split(b"data: ")[1])["type"] == "connected"
    assert b'"data":"missed"' in missed
    assert 250 <= int(retry.removeprefix(b"retry: ")) < 1000
    assert wire.finished is False  # ended, not cut off
    assert stream not in relay_provider.streams
    left = stream.close()
    assert left is not None
    await left
    assert relay_provider.hub.subscriber_count("news") == 0


class _HeldPort:
    """A session port whose joins finish only once `gate` opens."""

    def __init__(self, port: Any, gate: asyncio.Event) -> None:
        self._port = port
        self._gate = gate

    async def join(self, channel: str, member: Any) -> Any:
        joined = await self._port.join(channel, member)
        await self._gate.wait()
        return joined

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)


async def test_what_arrives_while_a_stream_opens_follows_what_it_resumes(
    relay_provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()
    session_port = relay_provider.session_port
    monkeypatch.setattr(
        relay_provider, "session_port", lambda *a: _HeldPort(session_port(*a), gate)
    )
    first = Delivery("e", "news", "0")
    relay_provider.broadcast(first)
    relay_provider.broadcast(Delivery("e", "news", "1"))
    stream = SseStream(relay_provider, ["news"], relay_provider.hub.event_id(first))
    wire = _Wire()
    opening = asyncio.ensure_future(stream.open(wire))
    await eventually(lambda: relay_provider.hub.subscriber_count("news") == 1)
    relay_provider.broadcast(Delivery("e", "news", "2"))  # subscribed, not yet resumed
    assert wire.frames == []
    gate.set()
    await opening
    relay_provider.broadcast(Delivery("e", "news", "3"))
    data = [orjson.loads(f.split(b"data: ")[1])["data"] for f in wire.frames[1:]]
    assert data == ["1", "2", "3"]
    left = stream.close()
    assert left is not None
    await left
