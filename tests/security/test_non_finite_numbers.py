"""Issue 12, finding 7: NaN, Infinity and 1e400 are refused on every publish path.

Python's JSON parser (the one FastAPI uses) reads `NaN`, `Infinity`, `-Infinity` and `1e400` as
floats, and orjson writes those as `null`: a publish of `{"price": NaN}` was accepted and reached
subscribers as `{"price": null}`. Now the REST body parser refuses the tokens, `encode_data` (which
every publish path calls) refuses the floats, both with 422 `non-finite-number`; the socket paths
answer the sender with a `pusher:error` frame and relay nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from websockets.asyncio.client import connect

from app.main import create_app
from app.relay import Relay
from core.errors import NonFiniteNumber
from core.policy import Policy
from core.principal import Principal, PrincipalKind
from core.publishing import EventRequest
from providers.pusherproto import signing
from tests import lambda_runtime
from tests.security.conftest import (
    API_HEADERS,
    APP_ID,
    APP_KEY,
    APP_SECRET,
    PROBLEM,
    PROBLEM_PREFIX,
    SECRETS,
    Listener,
    serve,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import httpx
    from websockets.asyncio.client import ClientConnection

    from tests.security.conftest import Target

# Each is spliced into a JSON body as it is: the wire form, not a Python float.
TOKENS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E+999"]
# Where in the data it hides.
PLACES = ["{}", '{{"price": {}}}', "[1, 2, {}]", '{{"a": {{"b": [{{"c": {}}}]}}}}']
SLUG = "non-finite-number"


def _assert_non_finite(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_PREFIX + SLUG, body
    assert body["status"] == 422
    assert body["title"]
    assert not any(secret in response.text for secret in SECRETS)


def _event(data: str, channel: str = "open-forge") -> bytes:
    return f'{{"name": "priced", "channel": "{channel}", "data": {data}}}'.encode()


# -- REST: /v1/events, /v1/batch, /v1/users/{id}/events -----------------------------------------
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("token", TOKENS)
async def test_rest_publish_refuses_non_finite_numbers(
    target: Target, token: str, place: str
) -> None:
    response = await target.http.post(
        "/v1/events",
        content=_event(place.format(token)),
        headers={**API_HEADERS, "content-type": "application/json"},
    )
    _assert_non_finite(response)
    target.assert_untouched()


async def test_rest_publish_of_the_same_shape_with_finite_numbers_goes_through(
    target: Target,
) -> None:
    # The refusal is about the numbers, not the shape: the control publishes.
    response = await target.http.post(
        "/v1/events",
        content=_event('{"price": 1e308, "tiny": 1e-400, "n": [-0.0, null]}'),
        headers={**API_HEADERS, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    [message] = target.published
    assert orjson.loads(message.data) == {"price": 1e308, "tiny": 0.0, "n": [-0.0, None]}


@pytest.mark.parametrize("token", TOKENS)
async def test_a_batch_with_one_non_finite_number_publishes_nothing(
    target: Target, token: str
) -> None:
    good = {"name": "fine", "channel": "open-forge", "data": {"price": 1}}
    body = f'{{"batch": [{orjson.dumps(good).decode()}, {_event(token).decode()}]}}'
    response = await target.http.post(
        "/v1/batch", content=body, headers={**API_HEADERS, "content-type": "application/json"}
    )
    _assert_non_finite(response)
    target.assert_untouched()


@pytest.mark.parametrize("token", TOKENS)
async def test_send_to_user_refuses_non_finite_numbers(local_target: Target, token: str) -> None:
    assert local_target.local is not None
    listener = Listener(socket_id="999999.2")
    local_target.local.hub.subscribe(listener, "#server-to-user-alice")
    response = await local_target.http.post(
        "/v1/users/alice/events",
        content=f'{{"name": "priced", "data": {{"price": {token}}}}}',
        headers={**API_HEADERS, "content-type": "application/json"},
    )
    _assert_non_finite(response)
    assert listener.events() == []


async def test_a_body_without_a_content_type_is_checked_too(target: Target) -> None:
    response = await target.http.post("/v1/events", content=_event("NaN"), headers=API_HEADERS)
    _assert_non_finite(response)
    target.assert_untouched()


# -- the shared path: every publisher (the Pusher HTTP API's included) calls encode_data --------
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=repr)
async def test_the_publisher_refuses_non_finite_floats_from_any_caller(
    target: Target, value: float
) -> None:
    backend = Principal(PrincipalKind.BACKEND, id="test")
    event = EventRequest("priced", ["open-forge"], {"price": [1, value]}, None)
    with pytest.raises(NonFiniteNumber) as caught:
        await target.relay.publisher.publish(backend, [event])
    assert caught.value.status == 422
    target.assert_untouched()


@pytest.mark.parametrize("token", ["NaN", "Infinity", "1e400"])
async def test_the_pusher_http_api_relays_no_non_finite_number(
    local_target: Target, token: str
) -> None:
    path = f"/apps/{APP_ID}/events"
    body = f'{{"name": "priced", "channels": ["open-forge"], "data": {{"p": {token}}}}}'.encode()
    params = signing.sign_request(APP_KEY, APP_SECRET, "POST", path, body=body)
    response = await local_target.http.post(path, params=params, content=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == PROBLEM
    local_target.assert_untouched()


# -- client events over the local WebSocket ----------------------------------------------------
CLIENT_EVENT_POLICY = """
[[rule]]
pattern = "private-chat-{room}"
subscribe = ["anyone"]
publish = ["backend"]
client_events = ["anyone"]
"""


async def _next(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
    return frame


@contextlib.asynccontextmanager
async def _socket(port: int, channel: str) -> AsyncIterator[ClientConnection]:
    async with connect(f"ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7") as ws:
        established = await _next(ws)
        socket_id = orjson.loads(established["data"])["socket_id"]
        auth = signing.channel_auth(APP_KEY, APP_SECRET, socket_id=socket_id, channel=channel)
        subscribe = {"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}
        await ws.send(orjson.dumps(subscribe).decode())
        assert (await _next(ws))["event"] == "pusher_internal:subscription_succeeded"
        yield ws


@pytest.mark.parametrize("token", TOKENS)
async def test_a_client_event_with_a_non_finite_number_is_refused_and_not_relayed(
    local_target: Target, token: str
) -> None:
    policy = Policy.from_toml(CLIENT_EVENT_POLICY, source="client event policy")
    relay = Relay.build(local_target.settings, policy=policy)
    channel = "private-chat-1"
    try:
        async with (
            serve(create_app(relay=relay)) as port,
            _socket(port, channel) as sender,
            _socket(port, channel) as receiver,
        ):
            frame = f'{{"event": "client-price", "channel": "{channel}", "data": {{"p": {token}}}}}'
            await sender.send(frame)
            error = await _next(sender)
            assert error["event"] == "pusher:error", error
            # The sender's socket stays open, and the control event is the first thing the
            # receiver gets: the refused one was never relayed.
            control = {"event": "client-price", "channel": channel, "data": {"p": 1.5}}
            await sender.send(orjson.dumps(control).decode())
            relayed = await _next(receiver)
            assert relayed["event"] == "client-price"
            assert orjson.loads(relayed["data"]) == {"p": 1.5}
    finally:
        await relay.aclose()


# -- client events over API Gateway (the $default handler) --------------------------------------
@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The API Gateway handlers on moto and a stub management API, with the chat policy."""
    from moto import mock_aws

    from app.lambda_handler import LambdaRuntime
    from tests.e2e.apigw_support import (
        FakeLambda,
        aws_environment,
        build_relay,
        chat_policy,
        deploy_infra,
    )
    from tests.e2e.management_stub import StubThread

    aws_environment(monkeypatch)
    with mock_aws(), StubThread() as stub:
        deploy_infra()
        relay, provider = build_relay(
            stub.endpoint, policy=chat_policy(tmp_path), functions=FakeLambda()
        )
        runtime = LambdaRuntime(relay)
        lambda_runtime.install(runtime)
        try:
            yield runtime, provider, stub
        finally:
            lambda_runtime.install()


@pytest.mark.parametrize("token", ["NaN", "Infinity", "1e400"])
def test_a_gateway_client_event_with_a_non_finite_number_is_refused(
    gateway: Any, token: str
) -> None:
    from app import lambda_websocket as handlers
    from tests.e2e.apigw_support import connect_event, event, subscribe_frame
    from tests.e2e.apigw_support import token as user_token

    runtime, provider, stub = gateway
    channel = "private-team"

    def connect_as(cid: str, user: str) -> None:
        assert handlers.connect(connect_event(cid, user_token(user)), None) == {"statusCode": 200}
        row = runtime.run(provider.store.connection(cid))
        subscribed = send(cid, orjson.dumps(subscribe_frame(channel, row.socket_id)).decode())
        assert subscribed["event"] == "pusher_internal:subscription_succeeded", subscribed

    def send(cid: str, body: str) -> dict[str, Any]:
        found = event("apigw_default", body=body)
        found["requestContext"]["connectionId"] = cid
        answer = handlers.message(found, None)
        assert answer["statusCode"] == 200, answer
        return dict(orjson.loads(answer["body"])) if "body" in answer else {}

    def relayed_to_ben() -> list[Any]:
        frames = [orjson.loads(b) for b in stub.bodies("ben1")]
        return [f["data"] for f in frames if f.get("event") == "client-p"]

    connect_as("ann1", "ann")
    connect_as("ben1", "ben")
    frame = f'{{"event": "client-p", "channel": "{channel}", "data": {{"p": {token}}}}}'
    refused = send("ann1", frame)
    assert refused["event"] == "pusher:error", refused
    assert relayed_to_ben() == []
    # The control: the same event with a finite number reaches Ben.
    assert send("ann1", frame.replace(token, "1.5")) == {}
    assert relayed_to_ben() == ['{"p":1.5}']
