"""The provider: publish fans out from DynamoDB, a 410 cleans that connection up, big channels go
to SQS slices, sizes are refused before anything is posted."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import orjson
import pytest
from moto import mock_aws

from core.errors import ConfigurationError, PayloadTooLarge, ProviderError
from core.provider import Message, PresenceData
from core.settings import Settings
from providers.apigateway import handshake
from providers.apigateway.port import DynamoPort
from providers.apigateway.provider import ApiGatewayProvider
from providers.apigateway.records import Connection
from providers.apigateway.settings import ApiGatewaySettings
from providers.apigateway.slices import MAX_BODY_BYTES, Slice, bodies
from tests.e2e.apigw_support import aws_environment, build_relay, deploy_infra
from tests.e2e.management_stub import ManagementStub

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from app.relay import Relay


@pytest.fixture
def infra(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    aws_environment(monkeypatch)
    with mock_aws():
        yield deploy_infra()


@pytest.fixture
async def stub(infra: dict[str, str]) -> AsyncIterator[ManagementStub]:
    async with ManagementStub() as server:
        yield server


@pytest.fixture
async def relay(stub: ManagementStub) -> AsyncIterator[Relay]:
    found, _ = build_relay(stub.endpoint, fanout_slice=2)
    yield found
    await found.aclose()


def gateway(relay: Relay) -> ApiGatewayProvider:
    provider = relay.provider
    assert isinstance(provider, ApiGatewayProvider)
    return provider


async def connect(
    provider: ApiGatewayProvider,
    connection_id: str,
    *channels: str,
    presence: PresenceData | None = None,
) -> Connection:
    connection = Connection(connection_id, f"{len(connection_id)}.{connection_id[-1:]}0", 2**40)
    await provider.store.add_connection(connection)
    port = DynamoPort(provider.store, connection_id, connection=connection)
    for channel in channels:
        await port.join(channel, presence)
    return connection


def events(stub: ManagementStub, connection_id: str) -> list[dict[str, object]]:
    return [orjson.loads(body) for body in stub.bodies(connection_id)]


async def test_publish_reaches_subscribers_but_the_excluded_socket(
    relay: Relay, stub: ManagementStub
) -> None:
    provider = gateway(relay)
    sender = await connect(provider, "c1", "news")
    await connect(provider, "c2", "news")
    await connect(provider, "c3", "other")
    receipts = await provider.publish(
        [Message("news", "headline", '{"t":1}', socket_id=sender.socket_id, id="k:0")]
    )
    assert [(r.channel, r.name, r.id) for r in receipts] == [("news", "headline", "k:0")]
    assert events(stub, "c2") == [{"event": "headline", "channel": "news", "data": '{"t":1}'}]
    assert stub.bodies("c1") == []
    assert stub.bodies("c3") == []


async def test_a_gone_connection_is_cleaned_up_with_its_presence(
    relay: Relay, stub: ManagementStub
) -> None:
    provider = gateway(relay)
    await connect(provider, "ann", "presence-room", presence=PresenceData("ann", {"name": "A"}))
    await connect(provider, "ben", "presence-room", presence=PresenceData("ben", {}))
    stub.posts.clear()
    stub.gone.add("ann")  # vanished without $disconnect
    await provider.publish([Message("presence-room", "ping", "{}")])
    assert await provider.store.connection("ann") is None
    assert await provider.store.subscription("presence-room", "ann") is None
    assert [m.user_id for m in await provider.members("presence-room")] == ["ben"]
    assert events(stub, "ben")[-1] == {
        "event": "pusher_internal:member_removed",
        "channel": "presence-room",
        "data": '{"user_id":"ann"}',
    }
    stub.posts.clear()
    await provider.publish([Message("presence-room", "again", "{}")])
    assert [cid for cid, _ in stub.posts] == ["ben"]  # the gone one is not tried again


async def test_big_channels_go_to_sqs_slices(
    relay: Relay, stub: ManagementStub, infra: dict[str, str]
) -> None:
    provider = gateway(relay)  # fanout_slice=2
    for i in range(5):
        await connect(provider, f"c{i}", "crowd")
    report = await provider.broadcast("crowd", '{"event":"e","channel":"crowd","data":"1"}')
    assert report.sent == 2  # the first slice, posted by this invocation
    sqs = boto3.client("sqs")
    received = sqs.receive_message(QueueUrl=infra["FanoutQueueUrl"], MaxNumberOfMessages=10)
    parts = [Slice.decode(m["Body"]) for m in received["Messages"]]
    assert sorted(len(p.connections) for p in parts) == [1, 2]
    for part in parts:
        assert (await provider.deliver_slice(part)).sent == len(part.connections)
    assert sorted(cid for cid, _ in stub.posts) == [f"c{i}" for i in range(5)]


def test_a_slice_too_big_for_one_message_is_split() -> None:
    frame = "x" * 120_000
    ids = [f"{i:020d}" for i in range(8000)]
    found = list(bodies("ch", frame, ids))
    assert len(found) > 1
    assert all(len(b.encode()) <= MAX_BODY_BYTES for b in found)
    assert [c for b in found for c in Slice.decode(b).connections] == ids
    with pytest.raises(ValueError, match="version"):
        Slice.decode('{"v": 2}')


async def test_sizes_are_refused_before_any_post(relay: Relay, stub: ManagementStub) -> None:
    provider = gateway(relay)
    await connect(provider, "c1", "news")
    small = Message("news", "ok", "{}")
    huge = Message("news", "huge", "x" * (128 * 1024))
    with pytest.raises(PayloadTooLarge):
        await provider.publish([small, huge])
    assert stub.posts == []


async def test_every_post_failing_is_a_provider_error(relay: Relay, stub: ManagementStub) -> None:
    provider = gateway(relay)
    await connect(provider, "c1", "news")
    stub.failures["c1"] = [(403, "ForbiddenException")]
    with pytest.raises(ProviderError) as caught:
        await provider.publish([Message("news", "e", "{}")])
    assert caught.value.retryable


async def test_queries_and_users(relay: Relay, stub: ManagementStub) -> None:
    provider = gateway(relay)
    await connect(provider, "a1", "presence-x", presence=PresenceData("ann", {"name": "Ann"}))
    await connect(provider, "a2", "presence-x", presence=PresenceData("ann", {"name": "Ann"}))
    occupancy = await provider.occupancy("presence-x")
    assert (occupancy.occupied, occupancy.subscription_count, occupancy.user_count) == (
        True,
        2,
        1,
    )
    assert (await provider.occupancy("empty")).occupied is False
    user = await connect(provider, "u1", "#server-to-user-ann")
    await provider.send_to_user("ann", "note", '"hi"')
    assert events(stub, user.connection_id)[-1]["event"] == "note"
    await provider.terminate_user("ann")
    assert stub.deletes == ["u1"]


def test_the_management_endpoint_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_environment(monkeypatch)
    settings = Settings(env="test", provider="apigateway")
    provider = ApiGatewayProvider(settings, ApiGatewaySettings())
    with pytest.raises(ConfigurationError, match="APIGW_ENDPOINT"):
        _ = provider.api
    built = ApiGatewaySettings(api_id="abc123", stage="prod", region="eu-west-1")
    assert built.management_endpoint == "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
    monkeypatch.setenv("AWS_REGION", "ap-south-1")  # Lambda's own variable
    monkeypatch.setenv("APIGW_API_ID", "xyz")
    monkeypatch.setenv("APIGW_STAGE", "dev")
    from_env = ApiGatewaySettings().management_endpoint
    assert from_env == "https://xyz.execute-api.ap-south-1.amazonaws.com/dev"


async def test_channels_are_served_together_and_each_in_order(
    relay: Relay, stub: ManagementStub
) -> None:
    provider = gateway(relay)
    await connect(provider, "ca", "a")
    await connect(provider, "cb", "b")
    await provider.publish(
        [Message("a", "first", "1"), Message("b", "other", "2"), Message("a", "second", "3")]
    )
    assert [e["event"] for e in events(stub, "ca")] == ["first", "second"]
    assert [e["event"] for e in events(stub, "cb")] == ["other"]


async def test_the_greeting_stops_once_the_connection_left(
    relay: Relay, stub: ManagementStub
) -> None:
    provider = gateway(relay)
    stub.gone.add("left")  # API Gateway keeps answering 410, and there is no row any more

    async def no_wait(_: float) -> None:
        return None

    assert await handshake.greet(provider, "left", "1.2", sleep=no_wait) is False
    assert len(stub.posts) == 0
    assert provider.api.requests == handshake.CHECK_ROW_EVERY


async def test_the_greeting_gives_up_after_the_wait(relay: Relay, stub: ManagementStub) -> None:
    provider = gateway(relay)
    await connect(provider, "slow")
    stub.gone.add("slow")
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    greeted = await handshake.greet(provider, "slow", "1.2", sleep=sleep, clock=lambda: now[0])
    assert greeted is False
    assert 9.0 < now[0] <= provider.gateway.handshake_wait_seconds
