"""POST /v1/events and POST /v1/batch: who may publish, what is well formed, all or nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest

from app.main import create_app
from app.relay import Relay
from core.policy import Policy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from core.settings import Settings
    from tests.unit.conftest import Recorder

PROBLEM = "urn:realtime-relay:problem:"
SECRET_VALUE = "sk_live_TOPSECRET_4f9a8b7c6d5e"


def _assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + slug
    assert body["status"] == status
    return body


@pytest.fixture
def backend(relay_api_key: str) -> dict[str, str]:
    return {"X-API-Key": relay_api_key}


async def test_api_key_header_publishes_and_the_subscriber_receives_it(
    http: httpx.AsyncClient, backend: dict[str, str], relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    response = await http.post(
        "/v1/events", json={"name": "update", "channel": "news", "data": {"a": 1}}, headers=backend
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "local"
    assert body["accepted"] == 1
    assert [(r["channel"], r["name"]) for r in body["receipts"]] == [("news", "update")]
    assert isinstance(body["receipts"][0]["id"], str)
    assert listener.events == [("news", "update", '{"a":1}')]


async def test_bearer_api_key_publishes(
    http: httpx.AsyncClient, relay_api_key: str, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    response = await http.post(
        "/v1/events",
        json={"name": "update", "channel": "news", "data": "plain text"},
        headers={"Authorization": f"Bearer {relay_api_key}"},
    )
    assert response.status_code == 200, response.text
    assert listener.events == [("news", "update", "plain text")]


async def test_one_event_to_several_channels(
    http: httpx.AsyncClient, backend: dict[str, str], relay_listen: Callable[..., Recorder]
) -> None:
    a, b = relay_listen("a"), relay_listen("b")
    response = await http.post(
        "/v1/events",
        json={"name": "tick", "channels": ["a", "b", "a"], "data": [1, 2]},
        headers=backend,
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2  # duplicates collapse
    assert a.events == [("a", "tick", "[1,2]")]
    assert b.events == [("b", "tick", "[1,2]")]


async def test_socket_id_excludes_that_connection(
    http: httpx.AsyncClient, backend: dict[str, str], relay_listen: Callable[..., Recorder]
) -> None:
    sender = relay_listen("news", socket_id="111.222")
    other = relay_listen("news", socket_id="333.444")
    response = await http.post(
        "/v1/events",
        json={"name": "update", "channel": "news", "data": "x", "socket_id": "111.222"},
        headers=backend,
    )
    assert response.status_code == 200
    assert sender.events == []
    assert other.events == [("news", "update", "x")]


async def test_malformed_socket_id_is_refused(
    http: httpx.AsyncClient, backend: dict[str, str], relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    response = await http.post(
        "/v1/events",
        json={"name": "update", "channel": "news", "data": "x", "socket_id": "nope"},
        headers=backend,
    )
    _assert_problem(response, 400, "invalid-socket-id")
    assert listener.events == []


async def test_user_token_cannot_publish_on_the_default_policy(
    http: httpx.AsyncClient,
    relay_token: Callable[..., str],
    relay_listen: Callable[..., Recorder],
) -> None:
    listener = relay_listen("news", "private-user-alice")
    for channel in ("news", "private-user-alice"):
        response = await http.post(
            "/v1/events",
            json={"name": "update", "channel": channel, "data": "x"},
            headers={"Authorization": f"Bearer {relay_token('alice')}"},
        )
        _assert_problem(response, 403, "forbidden")
    assert listener.events == []


async def test_anonymous_cannot_publish(
    http: httpx.AsyncClient, relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    response = await http.post(
        "/v1/events", json={"name": "update", "channel": "news", "data": "x"}
    )
    _assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert listener.events == []


async def test_wrong_api_key_is_401_and_not_echoed(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/events",
        json={"name": "update", "channel": "news", "data": "x"},
        headers={"X-API-Key": SECRET_VALUE},
    )
    _assert_problem(response, 401, "invalid-token")
    assert SECRET_VALUE not in response.text


async def test_channel_and_channels_together_are_refused_in_their_own_words(
    http: httpx.AsyncClient, backend: dict[str, str], relay_listen: Callable[..., Recorder]
) -> None:
    # Was invalid-channel, "Invalid channel name": no channel name is wrong here.
    listener = relay_listen("a", "b")
    response = await http.post(
        "/v1/events",
        json={"name": "update", "channel": "a", "channels": ["b"], "data": "x"},
        headers=backend,
    )
    body = _assert_problem(response, 400, "invalid-request")
    assert body["detail"].startswith("both `channel` and `channels` given")
    assert "errors" not in body
    assert listener.events == []


@pytest.mark.parametrize("extra", [{}, {"channels": []}])
async def test_no_channel_at_all_is_refused(
    http: httpx.AsyncClient, backend: dict[str, str], extra: dict[str, Any]
) -> None:
    response = await http.post(
        "/v1/events", json={"name": "update", "data": "x", **extra}, headers=backend
    )
    _assert_problem(response, 400, "invalid-channel")


async def test_channels_up_to_the_limit_pass_and_one_more_is_too_many(
    http: httpx.AsyncClient,
    backend: dict[str, str],
    relay_listen: Callable[..., Recorder],
    relay_settings: Settings,
) -> None:
    limit = relay_settings.max_channels_per_event
    listener = relay_listen("c-0")
    channels = [f"c-{i}" for i in range(limit)]
    ok = await http.post(
        "/v1/events", json={"name": "e", "channels": channels, "data": "x"}, headers=backend
    )
    assert ok.status_code == 200
    assert ok.json()["accepted"] == limit
    too_many = await http.post(
        "/v1/events",
        json={"name": "e", "channels": [*channels, f"c-{limit}"], "data": "x"},
        headers=backend,
    )
    body = _assert_problem(too_many, 400, "too-many-items")
    assert body["limit"] == limit
    assert len(listener.events) == 1  # only from the first call


async def test_payload_limit_counts_encoded_bytes_not_characters(
    http: httpx.AsyncClient, backend: dict[str, str], relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    fits = "é" * 5120  # 10240 bytes in UTF-8
    over = "é" * 5121  # 10242 bytes, though only 5121 characters
    ok = await http.post(
        "/v1/events", json={"name": "e", "channel": "news", "data": fits}, headers=backend
    )
    assert ok.status_code == 200, ok.text
    response = await http.post(
        "/v1/events", json={"name": "e", "channel": "news", "data": over}, headers=backend
    )
    body = _assert_problem(response, 413, "payload-too-large")
    assert body["size"] == 10242
    assert body["limit"] == 10240
    assert over not in response.text
    assert [len(d) for _, _, d in listener.events] == [5120]


async def test_json_payload_limit_applies_to_its_encoding(
    http: httpx.AsyncClient, backend: dict[str, str]
) -> None:
    data = {"text": "€" * 3500}  # 10500 bytes once encoded
    response = await http.post(
        "/v1/events", json={"name": "e", "channel": "news", "data": data}, headers=backend
    )
    _assert_problem(response, 413, "payload-too-large")


@pytest.mark.parametrize(
    "name", ["pusher:subscribe", "pusher_internal:member_added", "client-typing", "", "x" * 201]
)
async def test_reserved_or_malformed_event_names_are_refused(
    http: httpx.AsyncClient,
    backend: dict[str, str],
    relay_listen: Callable[..., Recorder],
    name: str,
) -> None:
    listener = relay_listen("news")
    response = await http.post(
        "/v1/events", json={"name": name, "channel": "news", "data": "x"}, headers=backend
    )
    _assert_problem(response, 400, "invalid-event-name")
    assert listener.events == []


async def test_batch_publishes_every_item_in_order(
    http: httpx.AsyncClient, backend: dict[str, str], relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("a", "b")
    batch = [
        {"name": "one", "channel": "a", "data": "1"},
        {"name": "two", "channel": "b", "data": {"n": 2}},
        {"name": "three", "channel": "a", "data": "3"},
    ]
    response = await http.post("/v1/batch", json={"batch": batch}, headers=backend)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    assert listener.events == [("a", "one", "1"), ("b", "two", '{"n":2}'), ("a", "three", "3")]


@pytest.mark.parametrize(
    ("bad_item", "status", "slug"),
    [
        ({"name": "pusher:x", "channel": "a", "data": "x"}, 400, "invalid-event-name"),
        ({"name": "ok", "channel": "bad channel", "data": "x"}, 400, "invalid-channel"),
        ({"name": "ok", "channel": "a", "data": "x", "socket_id": "1"}, 400, "invalid-socket-id"),
        ({"name": "ok", "channel": "a", "data": "€" * 4000}, 413, "payload-too-large"),
    ],
)
async def test_batch_with_one_invalid_item_publishes_nothing(
    http: httpx.AsyncClient,
    backend: dict[str, str],
    relay_listen: Callable[..., Recorder],
    bad_item: dict[str, Any],
    status: int,
    slug: str,
) -> None:
    listener = relay_listen("a", "b")
    batch = [
        {"name": "one", "channel": "a", "data": "1"},
        {"name": "two", "channel": "b", "data": "2"},
        bad_item,
    ]
    response = await http.post("/v1/batch", json={"batch": batch}, headers=backend)
    body = _assert_problem(response, status, slug)
    assert body["item"] == 2
    assert body["detail"].startswith("batch item 2: ")
    assert listener.events == []


async def test_batch_refused_by_policy_publishes_nothing(
    http: httpx.AsyncClient,
    relay_token: Callable[..., str],
    relay_listen: Callable[..., Recorder],
) -> None:
    listener = relay_listen("a")
    batch = [{"name": "one", "channel": "a", "data": "1"}]
    response = await http.post(
        "/v1/batch",
        json={"batch": batch},
        headers={"Authorization": f"Bearer {relay_token('alice')}"},
    )
    _assert_problem(response, 403, "forbidden")
    assert listener.events == []


@pytest.mark.parametrize(
    ("event", "status", "slug"),
    [
        ({"name": "pusher:x", "channel": "a", "data": "x"}, 400, "invalid-event-name"),
        ({"name": "ok", "channel": "bad channel", "data": "x"}, 400, "invalid-channel"),
        ({"name": "ok", "channel": "a", "data": "€" * 4000}, 413, "payload-too-large"),
    ],
)
async def test_a_single_event_refusal_names_no_item(
    http: httpx.AsyncClient,
    backend: dict[str, str],
    event: dict[str, Any],
    status: int,
    slug: str,
) -> None:
    response = await http.post("/v1/events", json=event, headers=backend)
    body = _assert_problem(response, status, slug)
    assert "item" not in body
    assert not body["detail"].startswith("batch item")


async def test_batch_non_finite_number_names_its_item(
    http: httpx.AsyncClient, backend: dict[str, str], relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("a")
    content = (
        b'{"batch": [{"name": "e", "channel": "a", "data": {"n": 1}},'
        b' {"name": "e", "channel": "a", "data": {"n": 2}},'
        b' {"name": "e", "channel": "a", "data": {"n": [1, 1e400]}}]}'
    )
    response = await http.post(
        "/v1/batch", content=content, headers={**backend, "Content-Type": "application/json"}
    )
    body = _assert_problem(response, 422, "non-finite-number")
    assert body["item"] == 2
    assert body["detail"].startswith("batch item 2: ")
    assert listener.events == []


async def test_single_event_non_finite_number_names_no_item(
    http: httpx.AsyncClient, backend: dict[str, str]
) -> None:
    response = await http.post(
        "/v1/events",
        content=b'{"name": "e", "channel": "a", "data": NaN}',
        headers={**backend, "Content-Type": "application/json"},
    )
    body = _assert_problem(response, 422, "non-finite-number")
    assert "item" not in body


ITEM_POLICY = """
[[rule]]
pattern = "chat-{room}"
publish = ["user", "backend"]

[[rule]]
pattern = "typed-{name}"
publish = ["backend"]
options = { schemas = { "order" = { type = "object", required = ["id"] } } }
"""


@pytest.fixture
async def item_http(relay_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    policy = Policy.from_toml(ITEM_POLICY, source="batch item test policy")
    app = create_app(relay=Relay.build(relay_settings, policy=policy))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        yield client


async def test_batch_refused_by_policy_names_the_item(
    item_http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    batch = [
        {"name": "e", "channel": "chat-1", "data": "1"},
        {"name": "e", "channel": "typed-x", "data": "2"},
        {"name": "e", "channel": "typed-x", "data": "3"},
    ]
    response = await item_http.post(
        "/v1/batch",
        json={"batch": batch},
        headers={"Authorization": f"Bearer {relay_token('alice')}"},
    )
    body = _assert_problem(response, 403, "forbidden")
    assert body["item"] == 1  # the first event on the refused channel
    assert body["channel"] == "typed-x"
    assert body["detail"].startswith("batch item 1: ")


async def test_batch_schema_mismatch_names_the_item(
    item_http: httpx.AsyncClient, backend: dict[str, str]
) -> None:
    batch = [
        {"name": "order", "channel": "typed-x", "data": {"id": 1}},
        {"name": "order", "channel": "chat-1", "data": {}},
        {"name": "order", "channel": "typed-x", "data": {"no": "id"}},
    ]
    response = await item_http.post("/v1/batch", json={"batch": batch}, headers=backend)
    body = _assert_problem(response, 400, "invalid-payload")
    assert body["item"] == 2
    assert body["event"] == "order"
    assert body["detail"].startswith("batch item 2: data does not match the schema")


async def test_single_event_schema_mismatch_names_no_item(
    item_http: httpx.AsyncClient, backend: dict[str, str]
) -> None:
    event = {"name": "order", "channel": "typed-x", "data": {}}
    response = await item_http.post("/v1/events", json=event, headers=backend)
    body = _assert_problem(response, 400, "invalid-payload")
    assert "item" not in body
    assert body["detail"].startswith("data does not match the schema")


async def test_batch_over_max_batch_events_is_too_many_items(
    http: httpx.AsyncClient, backend: dict[str, str], relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("a")
    batch = [{"name": "e", "channel": "a", "data": str(i)} for i in range(101)]
    response = await http.post("/v1/batch", json={"batch": batch}, headers=backend)
    body = _assert_problem(response, 400, "too-many-items")
    assert body["limit"] == 100
    assert "item" not in body  # the batch is refused, not one of its events
    assert listener.events == []


async def test_batch_for_anonymous_is_401(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/batch", json={"batch": [{"name": "e", "channel": "a", "data": "x"}]}
    )
    _assert_problem(response, 401, "unauthenticated")


def _oversized_event(settings: Settings) -> bytes:
    padding = "x" * (settings.max_body_bytes + 1)
    return orjson.dumps({"name": "e", "channel": "news", "data": padding})


async def test_body_over_max_body_bytes_is_413_from_content_length(
    http: httpx.AsyncClient,
    backend: dict[str, str],
    relay_settings: Settings,
    relay_listen: Callable[..., Recorder],
) -> None:
    listener = relay_listen("news")
    response = await http.post(
        "/v1/events",
        content=_oversized_event(relay_settings),
        headers={**backend, "Content-Type": "application/json"},
    )
    body = _assert_problem(response, 413, "payload-too-large")
    assert body["instance"] == "/v1/events"
    assert "xxxxxxxx" not in response.text
    assert listener.events == []


async def test_non_numeric_content_length_is_refused(
    http: httpx.AsyncClient, backend: dict[str, str]
) -> None:
    response = await http.post(
        "/v1/events",
        content=b'{"name":"e","channel":"news","data":"x"}',
        headers={**backend, "Content-Type": "application/json", "Content-Length": "-1"},
    )
    _assert_problem(response, 413, "payload-too-large")


async def _chunks(body: bytes, size: int = 16_384) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_auth_body_over_limit_without_content_length_is_413(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    body = b"socket_id=1.2&channel_name=private-a&pad=" + b"x" * relay_settings.max_body_bytes
    response = await http.post(
        "/auth/channel",
        content=_chunks(body),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert "content-length" not in response.request.headers
    _assert_problem(response, 413, "payload-too-large")


async def test_auth_body_over_limit_with_a_lying_content_length_is_413(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    body = b"socket_id=1.2&channel_name=private-a&pad=" + b"x" * relay_settings.max_body_bytes
    response = await http.post(
        "/auth/channel",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "40"},
    )
    _assert_problem(response, 413, "payload-too-large")


async def test_events_body_over_limit_without_content_length_is_413(
    http: httpx.AsyncClient, backend: dict[str, str], relay_settings: Settings
) -> None:
    response = await http.post(
        "/v1/events",
        content=_chunks(_oversized_event(relay_settings)),
        headers={**backend, "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    _assert_problem(response, 413, "payload-too-large")


async def test_events_body_over_limit_with_a_lying_content_length_is_413(
    http: httpx.AsyncClient, backend: dict[str, str], relay_settings: Settings
) -> None:
    response = await http.post(
        "/v1/events",
        content=_oversized_event(relay_settings),
        headers={**backend, "Content-Type": "application/json", "Content-Length": "40"},
    )
    _assert_problem(response, 413, "payload-too-large")


async def test_streamed_body_over_limit_is_never_published(
    http: httpx.AsyncClient,
    backend: dict[str, str],
    relay_settings: Settings,
    relay_listen: Callable[..., Recorder],
) -> None:
    # Whatever the status, an oversized streamed body must not reach a subscriber.
    listener = relay_listen("news")
    response = await http.post(
        "/v1/events",
        content=_chunks(_oversized_event(relay_settings)),
        headers={**backend, "Content-Type": "application/json"},
    )
    assert response.status_code >= 400
    assert listener.events == []


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "e", "channel": "news", "data": "x", "api_secret": SECRET_VALUE},
        {"name": {"token": SECRET_VALUE}, "channel": "news", "data": "x"},
        {"name": "e", "channels": SECRET_VALUE, "data": "x"},
        {"channel": SECRET_VALUE, "data": "x"},
    ],
)
async def test_schema_errors_are_422_with_locations_but_no_input(
    http: httpx.AsyncClient, backend: dict[str, str], payload: dict[str, Any]
) -> None:
    response = await http.post("/v1/events", json=payload, headers=backend)
    body = _assert_problem(response, 422, "invalid-request")
    assert set(body) >= {"type", "title", "status", "detail", "instance", "errors"}
    assert body["errors"]
    for error in body["errors"]:
        assert set(error) == {"loc", "msg"}
        assert error["loc"][0] == "body"
    assert SECRET_VALUE not in response.text
    assert "TOPSECRET" not in response.text


async def test_batch_schema_error_lists_the_item_location(
    http: httpx.AsyncClient, backend: dict[str, str]
) -> None:
    batch = [
        {"name": "e", "channel": "a", "data": "x"},
        {"name": "e", "channel": ["a", SECRET_VALUE], "data": "x"},
    ]
    response = await http.post("/v1/batch", json={"batch": batch}, headers=backend)
    body = _assert_problem(response, 422, "invalid-request")
    assert ["body", "batch", "1", "channel"] in [e["loc"] for e in body["errors"]]
    assert body["item"] == 1
    assert body["detail"] == "batch item 1: the request does not match the schema"
    assert SECRET_VALUE not in response.text


async def test_batch_schema_error_outside_the_events_names_no_item(
    http: httpx.AsyncClient, backend: dict[str, str]
) -> None:
    batch = [{"name": "e", "channel": ["a"], "data": "x"}]
    response = await http.post("/v1/batch", json={"batch": batch, "x": 1}, headers=backend)
    body = _assert_problem(response, 422, "invalid-request")
    assert "item" not in body


async def test_invalid_json_is_422_without_echo(
    http: httpx.AsyncClient, backend: dict[str, str]
) -> None:
    response = await http.post(
        "/v1/events",
        content=b'{"name": "e", "data": "' + SECRET_VALUE.encode() + b'"',
        headers={**backend, "Content-Type": "application/json"},
    )
    _assert_problem(response, 422, "invalid-request")
    assert SECRET_VALUE not in response.text


async def test_idempotency_key_delivers_a_retry_once(
    http: httpx.AsyncClient, backend: dict[str, str], relay_listen: Callable[..., Recorder]
) -> None:
    listener = relay_listen("news")
    headers = {**backend, "Idempotency-Key": "retry-0001"}
    event = {"name": "update", "channel": "news", "data": "x"}
    first = await http.post("/v1/events", json=event, headers=headers)
    second = await http.post("/v1/events", json=event, headers=headers)
    assert first.status_code == 200
    assert second.status_code == 200
    assert len(listener.events) == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "slash/in/it"])
async def test_malformed_idempotency_key_is_refused(
    http: httpx.AsyncClient,
    backend: dict[str, str],
    relay_listen: Callable[..., Recorder],
    key: str,
) -> None:
    listener = relay_listen("news")
    response = await http.post(
        "/v1/events",
        json={"name": "update", "channel": "news", "data": "x"},
        headers={**backend, "Idempotency-Key": key},
    )
    _assert_problem(response, 400, "invalid-request")
    assert listener.events == []
