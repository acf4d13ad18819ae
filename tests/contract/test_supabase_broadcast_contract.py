"""The Supabase provider against an HTTP fake that follows Realtime's documented broadcast API.

The fake is what supabase/realtime's BroadcastController and BatchBroadcast accept:
`POST /realtime/v1/api/broadcast` with `apikey` and `Authorization: Bearer` carrying the key, a
JSON body `{"messages": [{"topic", "event", "payload" (an object), "private"}]}`, answering 202
with an empty body, 422 for a malformed batch, 429 over the rate limit, 401/403 for a bad key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest

from core.errors import PayloadTooLarge, ProviderError, ProviderTimeout, ProviderUnavailable
from core.provider import Message
from providers.supabase.broadcast import BroadcastApi
from providers.supabase.provider import SupabaseProvider
from providers.supabase.settings import SupabaseSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

URL = "https://project-ref.supabase.co"
SERVICE_KEY = "contract-service-role-key-0123456789"
JWT_SECRET = "contract-jwt-secret-0123456789abcdef0123"
MESSAGE_ID = "3f2a9c1d0e8b4d7a9f6e5c4b3a2d1e0f:0"  # the relay's `<base>:<index>` form


class FakeRealtime:
    """Realtime's broadcast endpoint: checks what it documents, records what it accepted."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.accepted: list[dict[str, Any]] = []
        self.script: list[int | type[httpx.TransportError]] = []  # statuses or errors, then 202

    def handler(self, request: httpx.Request) -> httpx.Response:
        """One call, as the endpoint answers it."""
        self.requests.append(request)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, type):
                raise step("scripted", request=request)
            return httpx.Response(step, json={"message": f"scripted {step}"})
        if request.method != "POST" or request.url.path != "/realtime/v1/api/broadcast":
            return httpx.Response(404)
        bearer = request.headers.get("authorization")
        if request.headers.get("apikey") != SERVICE_KEY or bearer != f"Bearer {SERVICE_KEY}":
            return httpx.Response(401, json={"message": "Error authorizing the request"})
        body = orjson.loads(request.content)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return httpx.Response(422, json={"errors": {"messages": ["can't be blank"]}})
        for m in messages:
            ok = (
                isinstance(m.get("topic"), str)
                and isinstance(m.get("event"), str)
                and isinstance(m.get("payload"), dict)
                and isinstance(m.get("private", False), bool)
            )
            if not ok:
                return httpx.Response(422, json={"errors": {"messages": [{"payload": ["bad"]}]}})
        self.accepted.extend(messages)
        return httpx.Response(202)


@pytest.fixture
def fake() -> FakeRealtime:
    """A fresh fake Realtime."""
    return FakeRealtime()


@pytest.fixture
def settings() -> SupabaseSettings:
    """Settings for a project at URL."""
    return SupabaseSettings(
        url=URL + "/",
        service_role_key=SERVICE_KEY,
        jwt_secret=JWT_SECRET,
        max_messages_per_call=3,
        max_attempts=3,
    )


@pytest.fixture
async def provider(
    fake: FakeRealtime, settings: SupabaseSettings
) -> AsyncIterator[SupabaseProvider]:
    """The provider, its HTTP going to the fake, without backoff sleeps."""
    http = httpx.AsyncClient(base_url=settings.url, transport=httpx.MockTransport(fake.handler))

    async def no_sleep(seconds: float) -> None:
        return None

    made = SupabaseProvider(settings, api=BroadcastApi(settings, http=http, sleep=no_sleep))
    yield made
    await made.aclose()
    await http.aclose()


def _message(channel: str, data: str = '{"text":"hi"}', name: str = "chat") -> Message:
    return Message(channel, name, data, id=MESSAGE_ID)


async def test_one_call_carries_events_for_many_channels(
    provider: SupabaseProvider, fake: FakeRealtime
) -> None:
    receipts = await provider.publish(
        [_message("news"), _message("private-room"), _message("presence-lobby", "plain text")]
    )
    assert [r.channel for r in receipts] == ["news", "private-room", "presence-lobby"]
    assert len(fake.requests) == 1
    request = fake.requests[0]
    assert request.url == URL + "/realtime/v1/api/broadcast"
    assert request.headers["apikey"] == SERVICE_KEY
    assert request.headers["authorization"] == f"Bearer {SERVICE_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert [(m["topic"], m["private"], m["payload"]) for m in fake.accepted] == [
        ("news", False, {"text": "hi"}),
        ("private-room", True, {"text": "hi"}),
        ("presence-lobby", True, {"data": "plain text"}),
    ]
    assert all(m["event"] == "chat" and m["id"] == MESSAGE_ID for m in fake.accepted)
    assert all(set(m) == {"topic", "event", "payload", "private", "id"} for m in fake.accepted)


async def test_batches_are_cut_at_the_configured_size(
    provider: SupabaseProvider, fake: FakeRealtime
) -> None:
    await provider.publish([_message(f"room-{i}") for i in range(7)])
    sizes = [len(orjson.loads(r.content)["messages"]) for r in fake.requests]
    assert sizes == [3, 3, 1]
    assert [m["topic"] for m in fake.accepted] == [f"room-{i}" for i in range(7)]


async def test_a_payload_over_the_limit_is_refused_before_any_call(
    fake: FakeRealtime, settings: SupabaseSettings
) -> None:
    small = SupabaseProvider(
        settings.model_copy(update={"max_payload_bytes": 1024}),
        http=httpx.AsyncClient(transport=httpx.MockTransport(fake.handler), base_url=URL),
    )
    # 1000 quotes are 1000 bytes of data but 2000+ once escaped inside {"data": "..."}.
    with pytest.raises(PayloadTooLarge) as caught:
        await small.publish([_message("news"), _message("news", '"' * 1000)])
    assert caught.value.extra["limit"] == 1024
    assert caught.value.extra["size"] > 2000
    assert fake.requests == []
    await small.aclose()


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (401, False), (403, False), (422, False), (429, True)]
)
async def test_4xx_is_final_and_keeps_realtimes_reason(
    provider: SupabaseProvider, fake: FakeRealtime, status: int, retryable: bool
) -> None:
    fake.script = [status]
    with pytest.raises(ProviderError) as caught:
        await provider.publish([_message("news")])
    error = caught.value
    assert type(error) is ProviderError
    assert error.status == 502
    assert error.retryable is retryable
    assert error.extra["provider_status"] == status
    assert f"scripted {status}" in error.detail
    assert SERVICE_KEY not in str(error.problem())
    assert len(fake.requests) == 1  # never retried


async def test_a_real_422_names_what_realtime_rejected(
    provider: SupabaseProvider, fake: FakeRealtime
) -> None:
    api = provider.api
    with pytest.raises(ProviderError, match="422") as caught:
        await api.send([{"topic": "news", "event": "x", "payload": "not an object"}])
    assert "payload" in caught.value.detail


@pytest.mark.parametrize(
    "failure",
    [500, 502, 503, httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError, httpx.ReadError],
)
async def test_5xx_and_timeouts_are_retried_until_accepted(
    provider: SupabaseProvider, fake: FakeRealtime, failure: int | type[httpx.TransportError]
) -> None:
    fake.script = [failure, failure]
    await provider.publish([_message("news")])
    assert len(fake.requests) == 3
    assert len(fake.accepted) == 1
    assert {r.content for r in fake.requests} == {fake.requests[0].content}  # same body each time


@pytest.mark.parametrize(
    ("script", "error_type", "status", "accepted"),
    [
        ([500, 503, 502], ProviderError, 502, False),
        ([httpx.ConnectTimeout] * 3, ProviderUnavailable, 503, False),
        (
            [httpx.ConnectError, httpx.RemoteProtocolError, httpx.PoolTimeout],
            ProviderUnavailable,
            503,
            False,
        ),
        ([httpx.ReadTimeout] * 3, ProviderTimeout, 504, None),
        # Once a request went out unanswered, nobody knows whether it was delivered.
        ([httpx.ReadTimeout, httpx.ConnectError, 503], ProviderTimeout, 504, None),
    ],
)
async def test_exhausted_retries_map_to_502_503_or_504(
    provider: SupabaseProvider,
    fake: FakeRealtime,
    script: list[int | type[httpx.TransportError]],
    error_type: type[ProviderError],
    status: int,
    accepted: bool | None,
) -> None:
    fake.script = list(script)
    with pytest.raises(ProviderError) as caught:
        await provider.publish([_message("news")])
    assert type(caught.value) is error_type
    assert caught.value.status == status
    assert caught.value.retryable is True
    assert caught.value.problem()["accepted"] is accepted
    assert len(fake.requests) == 3


async def test_a_failure_mid_way_says_how_many_went_out(
    provider: SupabaseProvider, fake: FakeRealtime
) -> None:
    fake.script = [202, 400]
    with pytest.raises(ProviderError) as caught:
        await provider.publish([_message(f"room-{i}") for i in range(5)])
    assert caught.value.problem()["messages_accepted"] == 3
    assert caught.value.problem()["accepted"] is False


async def test_backoff_is_jittered_and_grows(settings: SupabaseSettings) -> None:
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    def always_failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    http = httpx.AsyncClient(transport=httpx.MockTransport(always_failing), base_url=URL)
    api = BroadcastApi(
        settings.model_copy(update={"max_attempts": 4}), http=http, sleep=record, jitter=lambda: 1.0
    )
    with pytest.raises(ProviderError):
        await api.send([{"topic": "t", "event": "e", "payload": {}}])
    assert sleeps == [0.05, 0.1, 0.2]
    await http.aclose()


async def test_the_pooled_client_is_created_once_and_closed(
    settings: SupabaseSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRealtime()
    made: list[httpx.AsyncClient] = []
    original: Callable[..., httpx.AsyncClient] = httpx.AsyncClient

    def factory(**kwargs: Any) -> httpx.AsyncClient:
        client = original(transport=httpx.MockTransport(fake.handler), **kwargs)
        made.append(client)
        return client

    monkeypatch.setattr("httpx.AsyncClient", factory)
    provider = SupabaseProvider(settings)
    for _ in range(3):
        await provider.publish([_message("news")])
    assert len(made) == 1
    assert len(fake.accepted) == 3
    await provider.aclose()
    assert made[0].is_closed
