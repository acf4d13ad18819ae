"""The webhooks in the shell: the sink started with the app (local sockets report their channel
events), provider webhooks forwarded, `relay webhooks test`, and the Lambda handlers' events through
SQS (moto) to the consumer function, each request verified by the receiver with the Pusher SDK or
standardwebhooks."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import orjson
import pusher.signature
import pytest
import websockets
from moto import mock_aws
from pydantic import SecretStr

from app import lambda_websocket as handlers
from app import webhooks as app_webhooks
from app import webhooks_lambda
from app.cli import main
from app.lambda_handler import LambdaRuntime
from app.main import create_app
from app.relay import Relay
from core.webhooks import sink as webhook_sink
from providers.pusherproto import signing
from tests import lambda_runtime
from tests.e2e.apigw_support import (
    EVENTS,
    FakeLambda,
    aws_environment,
    connect_event,
    deploy_infra,
    disconnect_event,
    message_event,
    relay_settings,
    subscribe_frame,
    token,
)
from tests.e2e.management_stub import StubThread
from tests.servers import serve
from tests.unit.conftest import UNIT_SETTINGS
from tests.unit.core.webhooks.conftest import receiver
from tests.unit.core.webhooks.receiver import WEBHOOK_SECRET, Receiver, ReceiverThread

__all__ = ["receiver"]  # the fixture, shared

# The Pusher app whose webhooks the relay forwards (its own key and secret sign the outbound ones).
PUSHER_KEY = "forwarded-pusher-key"
PUSHER_SECRET = "forwarded-pusher-secret-0123456789"

if TYPE_CHECKING:
    from core.settings import Settings
    from tests.servers import LiveServer


async def test_local_sockets_report_occupied_members_client_events_and_vacated(
    receiver: tuple[Receiver, str], relay_settings: Settings
) -> None:
    backend, url = receiver
    settings = relay_settings.model_copy(
        update={"webhook_url": (url,), "webhook_hold_seconds": 0.2}
    )
    app = create_app(settings)
    async with serve(app) as server:
        assert webhook_sink.installed() is not None
        await _presence_visit(server, settings)
        await backend.wait_for(5)
    assert webhook_sink.installed() is None  # the app's stop uninstalled it
    assert backend.kinds() == [
        ("channel_occupied", "presence-room", None),
        ("member_added", "presence-room", "ann"),
        ("client_event", "presence-room", "ann"),
        ("member_removed", "presence-room", "ann"),
        ("channel_vacated", "presence-room", None),
    ]
    assert backend.events[2]["event"] == "client-typing"
    assert backend.refused == []


async def _presence_visit(server: LiveServer, settings: Settings) -> None:
    key, secret = settings.app_key, settings.app_secret.get_secret_value()
    async with websockets.connect(f"{server.ws_url}/app/{key}?protocol=7") as ws:
        hello = orjson.loads(await ws.recv())
        socket_id = orjson.loads(hello["data"])["socket_id"]
        member = orjson.dumps({"user_id": "ann", "user_info": {}}).decode()
        auth = signing.channel_auth(
            key, secret, socket_id=socket_id, channel="presence-room", channel_data=member
        )
        data = {"channel": "presence-room", "auth": auth, "channel_data": member}
        await ws.send(orjson.dumps({"event": "pusher:subscribe", "data": data}).decode())
        await ws.recv()
        typing = {"event": "client-typing", "channel": "presence-room", "data": {"on": True}}
        await ws.send(orjson.dumps(typing).decode())
        await ws.send(orjson.dumps({"event": "pusher:ping", "data": {}}).decode())
        assert orjson.loads(await ws.recv())["event"] == "pusher:pong"


async def test_an_sse_stream_occupies_and_vacates_its_channels(
    receiver: tuple[Receiver, str], relay_settings: Settings
) -> None:
    backend, url = receiver
    settings = relay_settings.model_copy(
        update={"webhook_url": (url,), "webhook_hold_seconds": 0.1}
    )
    app = create_app(settings)
    async with serve(app) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        async with http.stream("GET", "/v1/stream", params={"channel": "sse-news"}) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break  # connected
            await backend.wait_for(1)
        await backend.wait_for(2)
    assert backend.kinds() == [
        ("channel_occupied", "sse-news", None),
        ("channel_vacated", "sse-news", None),
    ]


@pytest.mark.parametrize("fmt", ["pusher", "standard"])
async def test_a_subscription_count_forwarded_from_pusher_keeps_its_number(
    relay_settings: Settings, fmt: str
) -> None:
    """Pusher's own webhook (tests/events/), signed as Pusher signs it (the SDK's signature),
    reaches the backend with each channel's count, in Pusher's format and the standard one."""
    from providers.pusher.provider import PusherProvider
    from providers.pusher.settings import PusherSettings

    sample = orjson.loads((EVENTS / "pusher_webhook_subscription_count.json").read_bytes())
    body = orjson.dumps({**sample, "time_ms": int(time.time() * 1000)})
    signed = {
        "X-Pusher-Key": PUSHER_KEY,
        "X-Pusher-Signature": pusher.signature.sign(PUSHER_SECRET, body.decode()),
        "Content-Type": "application/json",
    }
    backend = Receiver(fmt=fmt)
    async with serve(backend.app) as hooks:
        settings = relay_settings.model_copy(
            update={
                "webhook_url": (f"{hooks.http_url}/hooks",),
                "webhook_format": fmt,
                "webhook_secret": SecretStr(WEBHOOK_SECRET),
            }
        )
        forwarding = PusherProvider(
            PusherSettings(app_id="770078", key=PUSHER_KEY, secret=PUSHER_SECRET)
        )
        app = create_app(relay=Relay.build(settings, provider=forwarding))
        async with serve(app) as server, httpx.AsyncClient(base_url=server.http_url) as http:
            answer = await http.post("/v1/webhooks/pusher", content=body, headers=signed)
            assert answer.status_code == 200, answer.text
            await backend.wait_for(2)
    assert backend.events == sample["events"]  # as Pusher names them, the counts kept
    assert backend.refused == []


async def test_no_url_no_sink(relay_settings: Settings) -> None:
    assert await app_webhooks.start(relay_settings) is None
    assert webhook_sink.installed() is None


async def test_the_standard_format_is_verified_by_standardwebhooks(
    relay_settings: Settings,
) -> None:
    receiver = Receiver(fmt="standard")
    async with serve(receiver.app) as server:
        settings = relay_settings.model_copy(
            update={
                "webhook_url": (f"{server.http_url}/hooks",),
                "webhook_format": "standard",
                "webhook_secret": SecretStr(WEBHOOK_SECRET),
            }
        )
        [answer] = await app_webhooks.send_sample(settings)
    assert answer.status == 200
    assert receiver.kinds() == [
        ("member_added", app_webhooks.SAMPLE_CHANNEL, "relay-webhooks-test")
    ]
    assert receiver.ids[0].startswith("msg_")


def test_relay_webhooks_test_prints_each_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver = Receiver()
    with ReceiverThread(receiver) as url:
        for name, value in UNIT_SETTINGS.items():
            monkeypatch.setenv(f"RELAY_{name.upper()}", str(value))
        monkeypatch.setenv("RELAY_WEBHOOK_URL", f"{url}?token=hidden")
        assert main(["webhooks", "test"]) == 0
        receiver.failures = [503]
        monkeypatch.setenv("RELAY_WEBHOOK_URL", url)
        assert main(["webhooks", "test"]) == 1  # one attempt: the answer, as it came
    out = capsys.readouterr().out
    assert f"{url}: 200 OK" in out
    assert f"{url}: 503 Service Unavailable" in out
    assert "hidden" not in out
    assert len(receiver.events) == 1


def test_relay_webhooks_test_without_a_url_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in UNIT_SETTINGS.items():
        monkeypatch.setenv(f"RELAY_{name.upper()}", str(value))
    monkeypatch.delenv("RELAY_WEBHOOK_URL", raising=False)
    assert main(["webhooks", "test"]) == 2
    assert "RELAY_WEBHOOK_URL" in capsys.readouterr().err


# -- API Gateway: the handlers send to SQS, the consumer function delivers ----------------------
@contextlib.contextmanager
def lambda_container(monkeypatch: pytest.MonkeyPatch, url: str) -> Any:
    aws_environment(monkeypatch)
    with mock_aws(), StubThread() as stub:
        outputs = deploy_infra()
        monkeypatch.setenv("RELAY_WEBHOOK_URL", url)
        monkeypatch.setenv("RELAY_WEBHOOK_SQS_QUEUE", outputs["WebhookQueueUrl"])
        monkeypatch.setenv("RELAY_WEBHOOK_HOLD_SECONDS", "0.3")
        from providers.apigateway.provider import ApiGatewayProvider
        from providers.apigateway.settings import ApiGatewaySettings

        # The relay's store is the state table, as serverless.yml sets it.
        settings = relay_settings(store="dynamodb", dynamodb_table=outputs["StateTableName"])
        gateway = ApiGatewaySettings(
            table_prefix="relay-unit", endpoint=stub.endpoint, handshake_function="h"
        )
        provider = ApiGatewayProvider(settings, gateway, functions=FakeLambda())
        relay = Relay.build(settings, provider=provider)
        app_webhooks.install_on_lambda(settings, store=relay.store)  # as _build_relay does
        rt = LambdaRuntime(relay)
        lambda_runtime.install(rt)
        try:
            yield rt, provider, outputs["WebhookQueueUrl"]
        finally:
            consumer = webhooks_lambda._consumer.get("sender")
            if consumer is not None:
                rt.run(consumer.aclose())
            lambda_runtime.install()
            sink = webhook_sink.installed()
            if sink is not None:
                webhook_sink.uninstall(sink)
            webhooks_lambda._consumer.clear()


def _send(cid: str, frame: dict[str, Any]) -> None:
    assert handlers.message(message_event(cid, frame), None)["statusCode"] == 200


def _socket(rt: LambdaRuntime, provider: Any, cid: str, user: str) -> str:
    assert handlers.connect(connect_event(cid, token(user)), None) == {"statusCode": 200}
    row = rt.run(provider.store.connection(cid))
    assert row is not None
    return str(row.socket_id)


def test_apigateway_events_reach_the_backend_through_sqs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = Receiver(app_key="unit-key")
    with ReceiverThread(receiver) as url, lambda_container(monkeypatch, url) as (rt, prov, q):
        ann = _socket(rt, prov, "ann1", "ann")
        _send("ann1", subscribe_frame("presence-lobby", ann, {"user_id": "ann", "user_info": {}}))
        _send("ann1", {"event": "client-wave", "channel": "presence-lobby", "data": {}})
        bob = _socket(rt, prov, "bob1", "bob")
        _send("bob1", subscribe_frame("presence-lobby", bob, {"user_id": "bob", "user_info": {}}))
        assert handlers.disconnect(disconnect_event("bob1"), None) == {"statusCode": 200}
        # bob comes back at once (a reconnect): his leave and return cancel out
        bob = _socket(rt, prov, "bob2", "bob")
        _send("bob2", subscribe_frame("presence-lobby", bob, {"user_id": "bob", "user_info": {}}))
        assert handlers.disconnect(disconnect_event("ann1"), None) == {"statusCode": 200}
        sqs = boto3.client("sqs")
        records: list[dict[str, Any]] = []
        for _ in range(5):
            got = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10).get("Messages", [])
            records += [{"body": m["Body"]} for m in got]
            for m in got:
                sqs.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])
        assert webhooks_lambda.consume({"Records": records}, None)["delivered"] == 5
        receiver.wait_sync(5)
    assert receiver.kinds() == [
        ("channel_occupied", "presence-lobby", None),
        ("member_added", "presence-lobby", "ann"),
        ("client_event", "presence-lobby", "ann"),
        ("member_added", "presence-lobby", "bob"),
        ("member_removed", "presence-lobby", "ann"),
    ]


def _kinds(records: list[dict[str, Any]]) -> list[str]:
    return [orjson.loads(r["body"])["kind"] for r in records]


def _receive(q: str, *, most: int = 10) -> list[dict[str, Any]]:
    """One event source mapping poll: the records, deleted from the queue."""
    sqs = boto3.client("sqs")
    got = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=most).get("Messages", [])
    for m in got:
        sqs.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])
    return [{"body": m["Body"]} for m in got]


def test_on_lambda_a_return_in_a_later_batch_cancels_the_held_leave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bob's leave (and the channel's vacating) reaches a consumer alone (it polled before his
    return was queued); the handler that queued the return noted it in the state table, so the
    consumer drops the leave when its hold ends, and the next one drops the return."""
    receiver = Receiver(app_key="unit-key")
    with ReceiverThread(receiver) as url, lambda_container(monkeypatch, url) as (rt, prov, q):
        bob = _socket(rt, prov, "bob1", "bob")
        _send("bob1", subscribe_frame("presence-lobby", bob, {"user_id": "bob", "user_info": {}}))
        assert webhooks_lambda.consume({"Records": _receive(q)}, None)["delivered"] == 2
        assert handlers.disconnect(disconnect_event("bob1"), None) == {"statusCode": 200}
        bob = _socket(rt, prov, "bob2", "bob")
        _send("bob2", subscribe_frame("presence-lobby", bob, {"user_id": "bob", "user_info": {}}))
        leave = _receive(q, most=2)
        assert _kinds(leave) == ["member_removed", "channel_vacated"]
        assert webhooks_lambda.consume({"Records": leave}, None)["delivered"] == 0
        back = _receive(q)
        assert _kinds(back) == ["channel_occupied", "member_added"]
        assert webhooks_lambda.consume({"Records": back}, None)["delivered"] == 0
        receiver.wait_sync(2)
    assert receiver.kinds() == [
        ("channel_occupied", "presence-lobby", None),
        ("member_added", "presence-lobby", "bob"),
    ]
