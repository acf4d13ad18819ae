"""The apigateway provider seals what it publishes to an encrypted channel (before any post), with
the relay's own master key, and refuses the channel naming that key when it has none."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import nacl.secret
import orjson
import pytest
from moto import mock_aws

from core.errors import InvalidChannel, PayloadTooLarge
from core.provider import Message
from core.validation import validate_channel
from providers.apigateway.port import DynamoPort
from providers.apigateway.provider import ApiGatewayProvider
from providers.apigateway.records import Connection
from providers.apigateway.settings import ApiGatewaySettings
from providers.pusherproto.encryption import shared_secret
from tests.e2e.apigw_support import PREFIX, aws_environment, deploy_infra, relay_settings
from tests.e2e.management_stub import ManagementStub

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

MASTER_KEY = bytes(range(50, 82))
CHANNEL = "private-encrypted-vault"


@pytest.fixture
def infra(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    aws_environment(monkeypatch)
    with mock_aws():
        deploy_infra()
        yield


@pytest.fixture
async def stub(infra: None) -> AsyncIterator[ManagementStub]:
    async with ManagementStub() as server:
        yield server


@pytest.fixture
async def gateways(stub: ManagementStub) -> AsyncIterator[Callable[..., ApiGatewayProvider]]:
    """Providers on the stub, with the master key (or `master`), closed afterwards."""
    made: list[ApiGatewayProvider] = []

    def make(master: bytes | None = MASTER_KEY) -> ApiGatewayProvider:
        key = {} if master is None else {"encryption_master_key_base64": base64.b64encode(master)}
        options = ApiGatewaySettings(
            table_prefix=PREFIX, endpoint=stub.endpoint, max_payload_bytes=1024
        )
        made.append(ApiGatewayProvider(relay_settings(**key), options))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


async def test_publish_seals_each_encrypted_channel_before_posting(
    stub: ManagementStub, gateways: Callable[..., ApiGatewayProvider]
) -> None:
    provider = gateways()
    for connection_id, channel in (("c1", CHANNEL), ("c2", "news")):
        connection = Connection(connection_id, f"1.{connection_id[-1]}", 2**40)
        await provider.store.add_connection(connection)
        await DynamoPort(provider.store, connection_id, connection=connection).join(channel, None)
    await provider.publish(
        [Message(CHANNEL, "sealed", '{"card":"4111"}'), Message("news", "plain", '{"card":"4111"}')]
    )
    [sealed] = [orjson.loads(body) for body in stub.bodies("c1")]
    assert (sealed["event"], sealed["channel"]) == ("sealed", CHANNEL)
    assert "4111" not in sealed["data"]
    envelope = orjson.loads(sealed["data"])
    box = nacl.secret.SecretBox(shared_secret(CHANNEL, MASTER_KEY))
    opened = box.decrypt(
        base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"])
    )
    assert opened == b'{"card":"4111"}'
    [plain] = [orjson.loads(body) for body in stub.bodies("c2")]
    assert plain["data"] == '{"card":"4111"}'


async def test_the_sealed_size_is_checked_before_any_post(
    stub: ManagementStub, gateways: Callable[..., ApiGatewayProvider]
) -> None:
    provider = gateways()
    with pytest.raises(PayloadTooLarge, match="once encrypted"):
        await provider.publish([Message("news", "a", "x"), Message(CHANNEL, "b", "x" * 800)])
    assert stub.posts == []


def test_limits_follow_the_master_key(gateways: Callable[..., ApiGatewayProvider]) -> None:
    assert gateways().limits.supports_encrypted_channels
    without = gateways(master=None)
    assert not without.limits.supports_encrypted_channels
    with pytest.raises(InvalidChannel, match="RELAY_ENCRYPTION_MASTER_KEY_BASE64"):
        validate_channel(CHANNEL, without.limits)


def test_the_shared_secret_is_in_the_channel_answer(
    gateways: Callable[..., ApiGatewayProvider],
) -> None:
    answer = gateways().authorize_channel(socket_id="1.2", channel=CHANNEL, presence=None)
    assert base64.b64decode(answer["shared_secret"]) == shared_secret(CHANNEL, MASTER_KEY)
