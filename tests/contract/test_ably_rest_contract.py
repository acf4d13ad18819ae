"""The Ably provider against a fake of Ably's REST API built from the REST API reference.

The fake (`FakeAbly`) serves the documented routes with the documented shapes: Basic auth with
the key, `POST /channels/{id}/messages` (201 {channel, messageId}), `POST /messages` (batch specs,
200 [{channel, messageId}]), history and presence (arrays), ErrorInfo bodies, Ably's
idempotency (a message id already seen on a channel is discarded) and the `<base>:<index>` rule
for atomic multi-message publishes. The official SDK is run against the same fake first, so the
fake is checked against Ably's own client before the relay is checked against the fake.
"""

from __future__ import annotations

import base64
import itertools
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httpx
import orjson
import pytest
from ably import AblyRest  # type: ignore[import-untyped]  # the SDK ships no types
from ably.http import http as sdk_http  # type: ignore[import-untyped]
from pydantic import SecretStr

from core.errors import PayloadTooLarge, ProviderError, ProviderUnavailable
from core.provider import Message
from providers.ably.provider import AblyProvider
from providers.ably.rest import AblyRest as RelayAblyRest
from providers.ably.settings import AblySettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

KEY = "appId.keyId:c2VjcmV0LXBhcnQ="
BASIC = "Basic " + base64.b64encode(KEY.encode()).decode()
JSON = {"content-type": "application/json"}


@dataclass
class Fault:
    """A scripted answer; with `after_processing`, Ably did the work and the answer was lost."""

    status: int = 0
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after_processing: bool = False
    raises: type[httpx.TransportError] | None = None
    body: Any = None

    def response(self, request: httpx.Request) -> httpx.Response:
        if self.raises is not None:
            raise self.raises("scripted", request=request)
        payload = self.body if self.body is not None else {"error": self.error}
        return httpx.Response(self.status, json=payload, headers=self.headers)


def _error(status: int, code: int, message: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "statusCode": status, "message": message}}
    )


class FakeAbly:
    """Ably's REST API, in memory, as the reference documents it."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.history: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.presence: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.script: deque[Fault] = deque()
        self._serials = itertools.count()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        fault = self.script.popleft() if self.script else None
        if fault is not None and not fault.after_processing:
            return fault.response(request)
        answer = self._serve(request)
        return fault.response(request) if fault is not None else answer

    def bodies(self) -> list[Any]:
        """Every request body, decoded."""
        return [orjson.loads(r.content) if r.content else None for r in self.requests]

    def _serve(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != BASIC:
            return _error(401, 40101, "Invalid credentials")
        parts = request.url.raw_path.decode().split("?")[0].split("/")
        if request.method == "POST" and request.headers.get("content-type") != "application/json":
            return _error(415, 40000, "unsupported content type")
        body = orjson.loads(request.content) if request.content else None
        match request.method, parts:
            case "POST", ["", "channels", channel, "messages"]:
                return self._publish(unquote(channel), body, status=201)
            case "POST", ["", "messages"]:
                return self._batch(body)
            case "GET", ["", "channels", channel, "messages"]:
                return self._history(unquote(channel), request.url.params)
            case "GET", ["", "channels", channel, "presence"]:
                limit = int(request.url.params.get("limit", "100"))
                return httpx.Response(200, json=self.presence[unquote(channel)][:limit])
        return _error(404, 40400, "not found")

    def _publish(self, channel: str, body: Any, *, status: int) -> httpx.Response:
        messages = body if isinstance(body, list) else [body]
        if not all(isinstance(m, dict) for m in messages):
            return _error(400, 40000, "a message is an object")
        ids = [m.get("id") for m in messages]
        if len(messages) > 1 and any(ids):
            base = str(ids[0]).rpartition(":")[0]
            if ids != [f"{base}:{i}" for i in range(len(ids))]:
                return _error(400, 40031, "ids do not match the format for multi-message publish")
        size = sum(len(str(m.get("name") or "").encode()) for m in messages)
        size += sum(len(str(m.get("data") or "").encode()) for m in messages)
        if size > 65_536:
            return _error(413, 40009, "Maximum message size exceeded")
        seen = {m["id"] for m in self.history[channel]}
        serial = f"serial{next(self._serials)}"
        for index, message in enumerate(messages):
            message_id = message.get("id") or f"{serial}:{index}"
            if message_id not in seen:  # idempotent publishing: a repeated id is discarded
                self.history[channel].append({**message, "id": message_id, "timestamp": 1})
        return httpx.Response(status, json={"channel": channel, "messageId": serial})

    def _batch(self, body: Any) -> httpx.Response:
        specs = body if isinstance(body, list) else [body]
        results = []
        for spec in specs:
            channels = (
                spec["channels"] if isinstance(spec["channels"], list) else [spec["channels"]]
            )
            if len(channels) > 100:
                return _error(400, 40000, "at most 100 channels per spec")
            for channel in channels:
                answer = self._publish(channel, spec["messages"], status=200)
                if answer.status_code >= 300:
                    return answer
                results.append(orjson.loads(answer.content))
        return httpx.Response(200, json=results)

    def _history(self, channel: str, params: httpx.QueryParams) -> httpx.Response:
        limit = int(params.get("limit", "100"))
        if limit > 1000:
            return _error(400, 40003, "limit too large")
        items = list(self.history[channel])
        if params.get("direction", "backwards") == "backwards":
            items.reverse()
        return httpx.Response(200, json=items[:limit])


@dataclass
class Harness:
    """A provider wired to a fake, with its retry waits recorded instead of slept."""

    fake: FakeAbly
    provider: AblyProvider
    waits: list[float]


def _settings(**overrides: Any) -> AblySettings:
    return AblySettings(api_key=SecretStr(KEY), **overrides)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    fake = FakeAbly()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    settings = _settings(max_attempts=3, max_retry_wait_seconds=5)
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake), base_url=settings.base_url)
    rest = RelayAblyRest(settings, http=client, sleep=sleep, jitter=lambda: 0.5)
    yield Harness(fake, AblyProvider(settings, rest=rest), waits)
    await client.aclose()


def _messages(*channels: str, key: str = "K", data: str = "hello") -> list[Message]:
    return [Message(c, "greeting", data, id=f"{key}:{i}") for i, c in enumerate(channels)]


# -- the fake, checked against the official SDK ------------------------------------------------


async def test_the_sdk_publishes_reads_history_and_presence_through_the_fake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeAbly()
    fake.presence["presence-lobby"] = [{"clientId": "bob", "action": 1, "data": "hi"}]
    original = httpx.AsyncClient
    monkeypatch.setattr(
        sdk_http.httpx,
        "AsyncClient",
        lambda **_: original(transport=httpx.MockTransport(fake)),
    )
    sdk = AblyRest(key=KEY, rest_host="rest.example", use_binary_protocol=False)
    try:
        channel = sdk.channels.get("news")
        await channel.publish("greeting", "hello")
        page = await channel.history()
        members = await sdk.channels.get("presence-lobby").presence.get()
    finally:
        await sdk.close()
    assert [(m.name, m.data) for m in page.items] == [("greeting", "hello")]
    assert [m.client_id for m in members.items] == ["bob"]
    sdk_publish = fake.requests[0]
    assert (sdk_publish.method, sdk_publish.url.path) == ("POST", "/channels/news/messages")
    assert sdk_publish.headers["authorization"] == BASIC


# -- what the relay sends ----------------------------------------------------------------------


async def test_one_message_is_one_documented_publish(harness: Harness) -> None:
    receipts = await harness.provider.publish(_messages("news"))
    (request,) = harness.fake.requests
    assert request.method == "POST"
    assert request.url.raw_path == b"/channels/news/messages"
    assert request.headers["authorization"] == BASIC
    assert request.headers["x-ably-version"] == "1.2"
    assert request.headers["content-type"] == "application/json"
    assert orjson.loads(request.content) == {"name": "greeting", "data": "hello", "id": "K:0"}
    assert [(r.channel, r.id) for r in receipts] == [("news", "K:0")]


async def test_channel_names_travel_as_one_encoded_path_segment(harness: Harness) -> None:
    await harness.provider.publish(_messages("a=b@c,d.e;f"))
    assert harness.fake.requests[0].url.raw_path == b"/channels/a%3Db%40c%2Cd.e%3Bf/messages"
    assert [m["id"] for m in harness.fake.history["a=b@c,d.e;f"]] == ["K:0"]


async def test_many_messages_are_one_batch_request_with_one_spec_each(harness: Harness) -> None:
    receipts = await harness.provider.publish(_messages("a", "b", "c"))
    (request,) = harness.fake.requests
    assert (request.method, request.url.raw_path) == ("POST", b"/messages")
    assert orjson.loads(request.content) == [
        {"channels": "a", "messages": {"name": "greeting", "data": "hello", "id": "K:0"}},
        {"channels": "b", "messages": {"name": "greeting", "data": "hello", "id": "K:1"}},
        {"channels": "c", "messages": {"name": "greeting", "data": "hello", "id": "K:2"}},
    ]
    assert [r.id for r in receipts] == ["K:0", "K:1", "K:2"]
    assert {c: [m["id"] for m in ms] for c, ms in harness.fake.history.items()} == {
        "a": ["K:0"],
        "b": ["K:1"],
        "c": ["K:2"],
    }


async def test_two_events_on_one_channel_keep_their_own_ids(harness: Harness) -> None:
    # One atomic publish would need `<base>:0, <base>:1`; separate specs keep each id its own.
    messages = [Message("a", "x", "1", id="K:0"), Message("a", "y", "2", id="K:5")]
    await harness.provider.publish(messages)
    assert [m["id"] for m in harness.fake.history["a"]] == ["K:0", "K:5"]


async def test_messages_without_ids_get_base_index_ids(harness: Harness) -> None:
    receipts = await harness.provider.publish([Message("a", "x", "1"), Message("b", "x", "1")])
    base = str(receipts[0].id).rpartition(":")[0]
    assert [r.id for r in receipts] == [f"{base}:0", f"{base}:1"]


async def test_batches_stay_within_the_body_and_spec_limits(harness: Harness) -> None:
    big = "x" * 60_000
    await harness.provider.publish(_messages(*(f"c{i}" for i in range(40)), data=big))
    await harness.provider.publish(_messages(*(f"d{i}" for i in range(150)), key="L"))
    sizes = [len(r.content) for r in harness.fake.requests]
    assert all(size < 2 * 1024 * 1024 for size in sizes)
    assert [len(body) for body in harness.fake.bodies()] == [34, 6, 100, 50]
    assert len(harness.fake.history) == 190


async def test_a_message_over_the_limit_is_refused_before_anything_is_sent(
    harness: Harness,
) -> None:
    fits = "x" * (65_536 - len("greeting"))
    await harness.provider.publish(_messages("a", data=fits))
    with pytest.raises(PayloadTooLarge):
        await harness.provider.publish(_messages("b", "c", data=fits + "x"))
    assert len(harness.fake.requests) == 1


# -- errors and retries ------------------------------------------------------------------------


async def test_401_is_a_provider_error_and_is_not_retried(harness: Harness) -> None:
    harness.fake.script.append(
        Fault(401, {"code": 40101, "statusCode": 401, "message": "Invalid credentials"})
    )
    with pytest.raises(ProviderError) as caught:
        await harness.provider.publish(_messages("a"))
    assert type(caught.value) is ProviderError
    assert caught.value.status == 502
    assert caught.value.retryable is False
    assert caught.value.extra["provider_status"] == 401
    assert caught.value.extra["provider_code"] == 40101
    assert KEY.partition(":")[2] not in caught.value.detail
    assert len(harness.fake.requests) == 1


async def test_429_waits_for_its_retry_after_and_resends_the_same_ids(harness: Harness) -> None:
    limited = {"code": 42910, "statusCode": 429, "message": "Rate limit exceeded"}
    harness.fake.script.append(Fault(429, limited, {"retry-after": "3"}))
    await harness.provider.publish(_messages("a", "b"))
    assert harness.waits == [3.0]
    first, second = harness.fake.bodies()
    assert first == second
    assert [m["id"] for m in harness.fake.history["a"]] == ["K:0"]


async def test_a_long_retry_after_is_capped(harness: Harness) -> None:
    limited = {"code": 42910, "statusCode": 429, "message": "Rate limit exceeded"}
    harness.fake.script.append(Fault(429, limited, {"retry-after": "600"}))
    await harness.provider.publish(_messages("a"))
    assert harness.waits == [5.0]


async def test_429_every_time_is_unavailable_with_the_hint(harness: Harness) -> None:
    limited = {"code": 42910, "statusCode": 429, "message": "Rate limit exceeded"}
    harness.fake.script.extend(Fault(429, limited, {"retry-after": "2"}) for _ in range(3))
    with pytest.raises(ProviderUnavailable) as caught:
        await harness.provider.publish(_messages("a"))
    assert caught.value.headers() == {"Retry-After": "2"}
    assert len(harness.fake.requests) == 3


async def test_a_5xx_after_ably_took_the_message_is_retried_without_a_duplicate(
    harness: Harness,
) -> None:
    broken = {"code": 50000, "statusCode": 500, "message": "Internal error"}
    harness.fake.script.append(Fault(500, broken, after_processing=True))
    await harness.provider.publish(_messages("a", "b"))
    first, second = harness.fake.bodies()
    assert first == second
    assert len(harness.waits) == 1
    assert {c: [m["id"] for m in ms] for c, ms in harness.fake.history.items()} == {
        "a": ["K:0"],
        "b": ["K:1"],
    }


async def test_5xx_every_time_is_a_retryable_provider_error(harness: Harness) -> None:
    broken = {"code": 50300, "statusCode": 503, "message": "Service unavailable"}
    harness.fake.script.extend(Fault(503, broken) for _ in range(3))
    with pytest.raises(ProviderError) as caught:
        await harness.provider.publish(_messages("a"))
    assert caught.value.retryable is True
    assert len({r.content for r in harness.fake.requests}) == 1


async def test_timeouts_are_retried_then_unavailable(harness: Harness) -> None:
    harness.fake.script.extend(Fault(raises=httpx.ReadTimeout) for _ in range(2))
    await harness.provider.publish(_messages("a"))
    assert len(harness.fake.requests) == 3
    harness.fake.script.extend(Fault(raises=httpx.ConnectError) for _ in range(3))
    with pytest.raises(ProviderUnavailable):
        await harness.provider.publish(_messages("b"))


def _partial(status: int, code: int) -> Fault:
    return Fault(
        400,
        body={
            "error": {
                "code": 40020,
                "statusCode": 400,
                "message": "Batched response includes errors",
            },
            "batchResponse": [
                {"channel": "a", "messageId": "x:0"},
                {"channel": "b", "error": {"code": code, "statusCode": status, "message": "no"}},
            ],
        },
        after_processing=True,
    )


async def test_a_partial_batch_failure_that_may_pass_is_resent_whole(harness: Harness) -> None:
    harness.fake.script.append(_partial(503, 50300))
    await harness.provider.publish(_messages("a", "b"))
    assert len(harness.fake.requests) == 2
    assert [m["id"] for m in harness.fake.history["a"]] == ["K:0"]


async def test_a_partial_batch_failure_that_cannot_pass_names_the_channel(harness: Harness) -> None:
    harness.fake.script.append(_partial(401, 40160))
    with pytest.raises(ProviderError, match="channel 'b'") as caught:
        await harness.provider.publish(_messages("a", "b"))
    assert caught.value.extra["provider_code"] == 40160
    assert len(harness.fake.requests) == 1


# -- history and presence ----------------------------------------------------------------------


async def test_history_asks_newest_first_and_answers_oldest_first(harness: Harness) -> None:
    await harness.provider.publish(_messages("news", key="A"))
    await harness.provider.publish(_messages("news", key="B"))
    harness.fake.history["news"].append(
        {
            "id": "C:0",
            "name": "bin",
            "data": base64.b64encode(b"raw").decode(),
            "encoding": "base64",
        }
    )
    harness.fake.history["news"].append(
        {"id": "D:0", "name": "obj", "data": '{"a":1}', "encoding": "json"}
    )
    found = await harness.provider.history("news", limit=3)
    request = harness.fake.requests[-1]
    assert request.url.path == "/channels/news/messages"
    assert dict(request.url.params) == {"limit": "3", "direction": "backwards"}
    assert [(m.id, m.data) for m in found] == [
        ("B:0", "hello"),
        ("C:0", "cmF3"),
        ("D:0", '{"a":1}'),
    ]


async def test_members_are_the_presence_set_one_per_client(harness: Harness) -> None:
    harness.fake.presence["presence-lobby"] = [
        {
            "clientId": "bob",
            "connectionId": "c1",
            "action": 1,
            "data": '{"name":"Bob"}',
            "encoding": "json",
        },
        {
            "clientId": "bob",
            "connectionId": "c2",
            "action": 1,
            "data": '{"name":"Bob"}',
            "encoding": "json",
        },
        {"clientId": "ann", "connectionId": "c3", "action": 1, "data": "here"},
        {"clientId": "cy", "connectionId": "c4", "action": 1},
    ]
    members = await harness.provider.members("presence-lobby")
    request = harness.fake.requests[-1]
    assert request.url.path == "/channels/presence-lobby/presence"
    assert request.url.params["limit"] == "1000"
    assert [(m.user_id, dict(m.user_info)) for m in members] == [
        ("bob", {"name": "Bob"}),
        ("ann", {"data": "here"}),
        ("cy", {}),
    ]
