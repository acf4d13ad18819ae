"""JSON Schemas per event name, declared on a policy rule: checked on REST publishes and on
client events; a mismatch names the location, never the value; a bad schema stops start-up."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.main import create_app
from app.relay import Relay
from core.errors import ConfigurationError, InvalidPayload
from core.policy import Policy
from core.schemas import EventSchemas
from providers.pusherproto import signing
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from fastapi import FastAPI

    from core.settings import Settings
    from providers.local.provider import LocalProvider
    from tests.servers import LiveServer
    from tests.unit.conftest import Recorder

SECRET_LOOKING = "sk_live_SCHEMA_51HxQ2eZvKYlo2C"
POLICY = """
[[rule]]
pattern = "orders-{id}"
subscribe = ["anyone"]
publish = ["backend"]

[rule.options.schemas.order-updated]
type = "object"
required = ["id", "status"]
additionalProperties = false
properties.id = { type = "integer" }
properties.status = { enum = ["new", "paid", "shipped"] }
properties.lines.type = "array"
properties.lines.items.type = "object"
properties.lines.items.properties.sku = { type = "string", pattern = "^[A-Z]{3}-[0-9]+$" }

[rule.options.schemas.note]
type = "string"
maxLength = 20

[[rule]]
pattern = "private-chat-{room}"
subscribe = ["anyone"]
publish = ["backend"]
client_events = ["anyone"]

[rule.options.schemas.client-typing]
type = "object"
required = ["typing"]
properties.typing = { type = "boolean" }

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
publish = ["backend"]
"""
GOOD_ORDER = {"id": 7, "status": "paid", "lines": [{"sku": "ABC-1"}]}


@pytest.fixture
def policy() -> Policy:
    return Policy.from_toml(POLICY, source="schemas.toml")


@pytest.fixture
def schema_app(relay_settings: Settings, policy: Policy) -> FastAPI:
    return create_app(relay=Relay.build(relay_settings, policy=policy))


@pytest.fixture
async def client(schema_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=schema_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
        yield http


@pytest.fixture
def listen(schema_app: FastAPI) -> Callable[..., Recorder]:
    from tests.unit.conftest import Recorder

    provider: LocalProvider = schema_app.state.relay.provider

    def subscribe(*channels: str) -> Recorder:
        recorder = Recorder("9999.7")
        for channel in channels:
            provider.hub.subscribe(recorder, channel)
        return recorder

    return subscribe


async def publish(http: httpx.AsyncClient, channel: str, name: str, data: Any) -> httpx.Response:
    return await http.post(
        "/v1/events",
        json={"name": name, "channel": channel, "data": data},
        headers={"X-API-Key": str(UNIT_SETTINGS["api_keys"])},
    )


def assert_invalid(response: httpx.Response, where: str) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:realtime-relay:problem:invalid-payload"
    detail: str = body["detail"]
    assert f" at {where}:" in detail, detail
    assert SECRET_LOOKING not in response.text
    return detail


async def test_matching_data_is_published(
    client: httpx.AsyncClient, listen: Callable[..., Recorder]
) -> None:
    recorder = listen("orders-7")
    response = await publish(client, "orders-7", "order-updated", GOOD_ORDER)
    assert response.status_code == 200, response.text
    assert recorder.events == [("orders-7", "order-updated", orjson.dumps(GOOD_ORDER).decode())]


async def test_json_in_a_string_is_checked_as_json(
    client: httpx.AsyncClient, listen: Callable[..., Recorder]
) -> None:
    recorder = listen("orders-7")
    encoded = orjson.dumps(GOOD_ORDER).decode()
    assert (await publish(client, "orders-7", "order-updated", encoded)).status_code == 200
    assert (await publish(client, "orders-7", "note", "a short note")).status_code == 200
    assert len(recorder.deliveries) == 2


@pytest.mark.parametrize(
    ("data", "where", "check"),
    [
        ({"id": SECRET_LOOKING, "status": "paid"}, "id", "type"),
        ({"id": 7, "status": SECRET_LOOKING}, "status", "enum"),
        ({"id": 7, "status": "new", "lines": [{"sku": SECRET_LOOKING}]}, "lines/0/sku", "pattern"),
        ({"id": 7}, "(root)", "required"),
        ({"id": 7, "status": "new", SECRET_LOOKING: 1}, "(root)", "additionalProperties"),
        (SECRET_LOOKING, "(root)", "type"),
    ],
)
async def test_mismatching_data_is_refused_naming_where_not_what(
    client: httpx.AsyncClient,
    listen: Callable[..., Recorder],
    data: Any,
    where: str,
    check: str,
) -> None:
    recorder = listen("orders-7")
    detail = assert_invalid(await publish(client, "orders-7", "order-updated", data), where)
    assert "order-updated" in detail
    assert check in detail
    assert recorder.deliveries == []


async def test_a_string_schema_refuses_a_long_secret(client: httpx.AsyncClient) -> None:
    detail = assert_invalid(await publish(client, "orders-1", "note", SECRET_LOOKING), "(root)")
    assert "maxLength" in detail


async def test_events_and_channels_without_a_schema_are_not_checked(
    client: httpx.AsyncClient,
) -> None:
    assert (await publish(client, "orders-7", "other-event", {"any": "thing"})).status_code == 200
    assert (await publish(client, "news", "order-updated", "no schema here")).status_code == 200


async def test_a_batch_is_all_or_nothing_on_a_schema_mismatch(
    client: httpx.AsyncClient, listen: Callable[..., Recorder]
) -> None:
    recorder = listen("orders-1", "orders-2")
    batch = {
        "batch": [
            {"name": "order-updated", "channel": "orders-1", "data": GOOD_ORDER},
            {
                "name": "order-updated",
                "channel": "orders-2",
                "data": {"id": SECRET_LOOKING, "status": "new"},
            },
        ]
    }
    response = await client.post(
        "/v1/batch", json=batch, headers={"X-API-Key": str(UNIT_SETTINGS["api_keys"])}
    )
    assert_invalid(response, "id")
    assert recorder.deliveries == []


# --- bad schemas stop start-up ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schemas", "complaint"),
    [
        ('{ order = { type = "nope" } }', "options.schemas.order is not a valid JSON Schema"),
        ("{ order = { minLength = -1 } }", "options.schemas.order is not a valid JSON Schema"),
        ("{ order = { required = 5 } }", "options.schemas.order is not a valid JSON Schema"),
        ('"object"', "options.schemas must be a table"),
    ],
)
def test_an_invalid_schema_is_a_configuration_error_naming_the_rule(
    relay_settings: Settings, schemas: str, complaint: str
) -> None:
    text = (
        '[[rule]]\npattern = "news"\npublish = ["backend"]\n\n'
        '[[rule]]\npattern = "shop-{id}"\npublish = ["backend"]\n'
        f"options = {{ schemas = {schemas} }}\n"
    )
    policy = Policy.from_toml(text, source="bad.toml")
    with pytest.raises(ConfigurationError) as raised:
        EventSchemas(policy)
    assert raised.value.detail.startswith("bad.toml: rule #2 (shop-{id}) "), raised.value.detail
    assert complaint in raised.value.detail
    with pytest.raises(ConfigurationError, match="rule #2"):
        Relay.build(relay_settings, policy=policy)


def test_check_raises_invalid_payload_directly(policy: Policy) -> None:
    schemas = EventSchemas(policy)
    schemas.check("orders-1", "order-updated", orjson.dumps(GOOD_ORDER).decode())
    with pytest.raises(InvalidPayload) as raised:
        schemas.check("orders-1", "order-updated", '{"id": "x", "status": "new"}')
    assert raised.value.extra["event"] == "order-updated"


# --- client events over the local WebSocket -------------------------------------------------


class Socket:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.socket_id = ""

    async def next(self, within: float = 3.0) -> dict[str, Any]:
        frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.ws.recv(), within))
        return frame

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def subscribe_private(self, channel: str, settings: Settings) -> None:
        auth = signing.channel_auth(
            settings.app_key,
            settings.app_secret.get_secret_value(),
            socket_id=self.socket_id,
            channel=channel,
        )
        await self.send({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}})
        answer = await self.next()
        assert answer["event"] == "pusher_internal:subscription_succeeded", answer


@pytest.fixture
async def sockets(
    schema_app: FastAPI,
    relay_settings: Settings,
    relay_serve: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[LiveServer]],
) -> AsyncIterator[tuple[Socket, Socket]]:
    """Two sockets subscribed to private-chat-1."""
    async with relay_serve(schema_app) as server, contextlib.AsyncExitStack() as stack:
        pair = []
        for _ in range(2):
            ws = await stack.enter_async_context(
                connect(f"{server.ws_url}/app/{relay_settings.app_key}?protocol=7", open_timeout=5)
            )
            socket = Socket(ws)
            established = await socket.next()
            socket.socket_id = orjson.loads(established["data"])["socket_id"]
            await socket.subscribe_private("private-chat-1", relay_settings)
            pair.append(socket)
        yield pair[0], pair[1]


async def test_a_matching_client_event_is_relayed(sockets: tuple[Socket, Socket]) -> None:
    sender, receiver = sockets
    await sender.send(
        {"event": "client-typing", "channel": "private-chat-1", "data": {"typing": True}}
    )
    frame = await receiver.next()
    assert frame["event"] == "client-typing"
    assert orjson.loads(frame["data"]) == {"typing": True}


async def test_a_mismatching_client_event_is_refused_and_not_relayed(
    sockets: tuple[Socket, Socket],
) -> None:
    sender, receiver = sockets
    await sender.send(
        {"event": "client-typing", "channel": "private-chat-1", "data": {"typing": SECRET_LOOKING}}
    )
    error = await sender.next()
    assert error["event"] == "pusher:error", error
    message = error["data"]["message"]
    assert "typing" in message
    assert SECRET_LOOKING not in orjson.dumps(error).decode()
    # Nothing reached the other socket: the next thing it sees is a later, valid event.
    await sender.send(
        {"event": "client-typing", "channel": "private-chat-1", "data": {"typing": False}}
    )
    frame = await receiver.next()
    assert orjson.loads(frame["data"]) == {"typing": False}
