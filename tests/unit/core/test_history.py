"""core/history.py: ids, epochs, since=, gaps, the envelope, and what is recorded (memory store);
then on publish through the apigateway provider, the history in DynamoDB on moto."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import boto3
import orjson
import pytest
from moto import mock_aws

from core.errors import (
    BadRequest,
    ConfigurationError,
    EncryptedChannelHistory,
    HistoryGap,
    NotSupported,
    PayloadTooLarge,
)
from core.history import (
    ChannelHistory,
    HistoryId,
    envelope,
    is_id,
    parse_id,
    refuse_encrypted,
)
from core.policy import Policy
from core.principal import Principal, PrincipalKind
from core.provider import Limits, Message
from core.publishing import EventRequest
from core.settings import Settings
from core.stores.memory import MemoryStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from app.relay import Relay
    from core.policy.rules import Rule
    from tests.e2e.management_stub import ManagementStub

POLICY = """
[[rule]]
pattern = "private-encrypted-wrapped-{x}"
subscribe = ["anyone"]
publish = ["backend"]
history = ["anyone"]
options = { history = { envelope = true } }

[[rule]]
pattern = "private-encrypted-{x}"
subscribe = ["anyone"]
history = ["anyone"]

[[rule]]
pattern = "wrapped-{x}"
subscribe = ["anyone"]
publish = ["backend"]
history = ["anyone"]
options = { history = { envelope = true } }

[[rule]]
pattern = "kept-{x}"
subscribe = ["anyone"]
history = ["user"]

[[rule]]
pattern = "{x}"
subscribe = ["anyone"]
"""


NO_LIMITS = Limits()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _history(
    store: MemoryStore | None = None,
    *,
    keep: int = 5,
    ttl: int = 60,
    limits: Limits = NO_LIMITS,
) -> tuple[ChannelHistory, Clock]:
    clock = Clock()
    settings = Settings(history_max_messages=keep, history_ttl_seconds=ttl)
    policy = Policy.from_toml(POLICY, source="test")
    store = store or MemoryStore(clock=clock)
    return ChannelHistory(settings, policy, store, limits, clock=clock), clock


def _rules(history: ChannelHistory, *channels: str) -> dict[str, Rule | None]:
    policy = Policy.from_toml(POLICY, source="test")
    return {c: policy.rule_for(c) for c in channels}


async def _publish(history: ChannelHistory, channel: str, *names: str) -> list[Message]:
    messages = [Message(channel, n, f'"{n}"', json=True) for n in names]
    pending = await history.reserve(messages, _rules(history, channel))
    await history.commit(pending)
    return pending.messages


def test_ids_parse_and_print() -> None:
    assert parse_id("0badf00d:42") == HistoryId("0badf00d", 42)
    assert str(HistoryId("0badf00d", 42)) == "0badf00d:42"
    assert is_id("0badf00d:1")
    assert not is_id("0badf00d-1")  # the SSE replay log's ids


@pytest.mark.parametrize("text", ["", "x", "abc:0", "abc:-1", "ABC:1", "abc:1x", "a:" + "9" * 20])
def test_malformed_ids_are_400(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_id(text)


async def test_ids_count_up_within_one_epoch() -> None:
    history, _ = _history()
    sent = await _publish(history, "kept-a", "one", "two", "three")
    ids = [parse_id(m.history_id or "") for m in sent]
    assert len({i.epoch for i in ids}) == 1
    assert [i.seq for i in ids] == [1, 2, 3]
    assert [m.data for m in sent] == ['"one"', '"two"', '"three"']  # no envelope asked for


async def test_since_answers_what_followed_oldest_first_with_a_continuation() -> None:
    history, _ = _history()
    sent = await _publish(history, "kept-a", "a", "b", "c", "d")
    page = await history.read("kept-a", since=sent[0].history_id, limit=2)
    assert [m.name for m in page.messages] == ["b", "c"]
    assert page.next == sent[2].history_id
    page = await history.read("kept-a", since=page.next, limit=2)
    assert [m.name for m in page.messages] == ["d"]
    assert page.next is None
    page = await history.read("kept-a", since=sent[3].history_id, limit=2)
    assert page.messages == []
    assert page.next is None


async def test_a_new_epoch_is_a_gap() -> None:
    history, _ = _history()
    sent = await _publish(history, "kept-a", "a", "b")
    restarted, _ = _history()  # a memory store that restarted: the history is gone
    await _publish(restarted, "kept-a", "c")
    with pytest.raises(HistoryGap) as caught:
        await restarted.read("kept-a", since=sent[0].history_id, limit=10)
    latest = caught.value.extra["latest"]
    assert parse_id(latest).epoch != parse_id(sent[0].history_id or "").epoch
    with pytest.raises(HistoryGap):
        await _history()[0].read("kept-a", since=sent[0].history_id, limit=10)  # no history


async def test_trimmed_past_the_id_is_a_gap_but_within_the_cap_is_not() -> None:
    history, _ = _history(keep=3)
    sent = await _publish(history, "kept-a", *"abcde")
    with pytest.raises(HistoryGap):
        await history.read("kept-a", since=sent[0].history_id, limit=10)
    page = await history.read("kept-a", since=sent[2].history_id, limit=10)
    assert [m.name for m in page.messages] == ["d", "e"]
    newest = await history.read("kept-a", since=None, limit=10)
    assert [m.name for m in newest.messages] == ["c", "d", "e"]


async def test_expired_past_the_id_is_a_gap() -> None:
    history, clock = _history(ttl=60)
    first = await _publish(history, "kept-a", "old")
    clock.now += 50
    await _publish(history, "kept-a", "newer")
    clock.now += 20  # "old" is 70 s old, "newer" 20 s
    with pytest.raises(HistoryGap):
        await history.read("kept-a", since=first[0].history_id, limit=10)
    assert [m.name for m in (await history.read("kept-a", since=None, limit=9)).messages] == [
        "newer"
    ]


async def test_an_id_ahead_of_the_history_is_400() -> None:
    history, _ = _history()
    sent = await _publish(history, "kept-a", "a")
    epoch = parse_id(sent[0].history_id or "").epoch
    with pytest.raises(BadRequest):
        await history.read("kept-a", since=f"{epoch}:9", limit=10)


async def test_a_failed_publish_leaves_a_hole_that_is_no_gap() -> None:
    history, _ = _history()
    first = await _publish(history, "kept-a", "a")
    await history.reserve([Message("kept-a", "lost", "1")], _rules(history, "kept-a"))  # no commit
    await _publish(history, "kept-a", "c")
    page = await history.read("kept-a", since=first[0].history_id, limit=10)
    assert [(m.name, parse_id(m.id or "").seq) for m in page.messages] == [("c", 3)]


async def test_only_channels_whose_rule_grants_history_are_recorded() -> None:
    store = MemoryStore()
    history, _ = _history(store)
    assert history.records("kept-a")
    assert history.records("wrapped-a")
    assert not history.records("other")
    sent = await _publish(history, "other", "x")
    assert sent[0].history_id is None
    assert store.log_bytes == 0  # no log was even started


async def test_a_provider_that_keeps_its_own_history_gets_no_relay_history() -> None:
    history, _ = _history(limits=Limits(keeps_history=True))
    assert not history.records("kept-a")
    assert (await _publish(history, "kept-a", "x"))[0].history_id is None


async def test_the_envelope_carries_the_id_and_the_data_as_published() -> None:
    history, _ = _history()
    messages = [Message("wrapped-a", "e", '{"n":1}', json=True), Message("wrapped-a", "s", "hi")]
    pending = await history.reserve(messages, _rules(history, "wrapped-a"))
    await history.commit(pending)
    delivered = [orjson.loads(m.data) for m in pending.messages]
    assert delivered == [
        {"id": pending.messages[0].history_id, "data": {"n": 1}},
        {"id": pending.messages[1].history_id, "data": "hi"},
    ]
    kept = (await history.read("wrapped-a", since=None, limit=10)).messages
    assert [(m.data, m.json) for m in kept] == [('{"n":1}', True), ("hi", False)]


def test_an_envelope_over_the_limit_is_refused_before_any_id() -> None:
    history, _ = _history(limits=Limits(max_payload_bytes=100))
    rule = _rules(history, "wrapped-a")["wrapped-a"]
    data = orjson.dumps("x" * 70).decode()
    history.check_envelope(Message("kept-a", "e", data), _rules(history, "kept-a")["kept-a"])
    with pytest.raises(PayloadTooLarge):
        history.check_envelope(Message("wrapped-a", "e", data), rule)


def test_envelope_shape() -> None:
    assert envelope("e:1", "[1]", json=True) == '{"id":"e:1","data":[1]}'
    assert envelope("e:1", "[1]", json=False) == '{"id":"e:1","data":"[1]"}'


@pytest.mark.parametrize(
    "options",
    [
        'options = { history = { envelope = "yes" } }',
        "options = { history = { other = true } }",
        "options = { history = 3 }",
    ],
)
def test_a_malformed_history_option_stops_loading(options: str) -> None:
    policy = Policy.from_toml(
        f'[[rule]]\npattern = "{{x}}"\nhistory = ["anyone"]\n{options}\n', source="p.toml"
    )
    with pytest.raises(ConfigurationError, match=r"options\.history"):
        ChannelHistory(Settings(), policy, MemoryStore(), Limits())


def test_an_envelope_without_history_stops_loading() -> None:
    policy = Policy.from_toml(
        '[[rule]]\npattern = "{x}"\noptions = { history = { envelope = true } }\n', source="p"
    )
    with pytest.raises(ConfigurationError, match="grants no history"):
        ChannelHistory(Settings(), policy, MemoryStore(), Limits())


def test_ably_keeps_its_own_history() -> None:
    from pydantic import SecretStr

    from providers.ably.provider import AblyProvider
    from providers.ably.settings import AblySettings

    provider = AblyProvider(AblySettings(api_key=SecretStr("app.key:secret")))
    history = ChannelHistory(Settings(), Policy.default(), MemoryStore(), provider.limits)
    assert not history.records("news")  # the default policy grants history there


@pytest.mark.parametrize("channel", ["private-encrypted-a", "private-encrypted-wrapped-a"])
async def test_an_encrypted_channel_is_never_recorded_whatever_the_policy_grants(
    channel: str,
) -> None:
    store = MemoryStore()
    history, _ = _history(store)
    assert history.records("kept-a")  # the same store records a plain channel
    assert not history.records(channel)
    sent = await _publish(history, channel, "secret")
    assert sent[0].history_id is None
    assert sent[0].data == '"secret"'  # no envelope either: delivered as published
    assert store.log_bytes == 0  # the store holds nothing of it
    assert (await history.read(channel, since=None, limit=10)).messages == []


async def test_an_encrypted_channel_in_a_batch_is_left_out_of_the_records() -> None:
    store = MemoryStore()
    history, _ = _history(store)
    messages = [Message("private-encrypted-a", "e", '"secret"'), Message("kept-a", "e", '"x"')]
    rules = _rules(history, "private-encrypted-a", "kept-a")
    pending = await history.reserve(messages, rules)
    await history.commit(pending)
    assert list(pending.logs) == ["kept-a"]
    assert pending.messages[0].history_id is None
    kept = (await history.read("kept-a", since=None, limit=10)).messages
    assert [m.data for m in kept] == ['"x"']


def test_an_encrypted_channel_gets_no_envelope_check() -> None:
    history, _ = _history(limits=Limits(max_payload_bytes=100))
    rule = _rules(history, "private-encrypted-wrapped-a")["private-encrypted-wrapped-a"]
    data = orjson.dumps("x" * 70).decode()  # fits unwrapped, not in an envelope
    history.check_envelope(Message("private-encrypted-wrapped-a", "e", data), rule)


def test_the_history_of_an_encrypted_channel_is_refused_with_its_own_problem() -> None:
    refuse_encrypted("private-a")
    refuse_encrypted("news")
    with pytest.raises(EncryptedChannelHistory) as caught:
        refuse_encrypted("private-encrypted-a")
    problem = caught.value.problem()
    assert problem["type"] == "urn:realtime-relay:problem:encrypted-channel-history"
    assert problem["status"] == 501
    assert problem["channel"] == "private-encrypted-a"
    assert "keep no history" in problem["detail"]
    assert isinstance(caught.value, NotSupported)  # in core.errors' tree, under 501


# -- on publish through the apigateway provider: DynamoDB (moto), the management API stub ------
BACKEND = Principal(PrincipalKind.BACKEND, "test")


@pytest.fixture
async def apigateway(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Relay, ManagementStub, str]]:
    """A relay on the apigateway provider, its store the state table on moto; the stub the
    provider posts to; the table's name."""
    from app.relay import Relay
    from core.stores.dynamodb import DynamoStore
    from providers.apigateway.provider import ApiGatewayProvider
    from providers.apigateway.settings import ApiGatewaySettings
    from tests.e2e.apigw_support import PREFIX, aws_environment, relay_settings
    from tests.e2e.management_stub import ManagementStub

    aws_environment(monkeypatch)
    with mock_aws():
        table = _deploy_tables(PREFIX)
        async with ManagementStub() as stub:
            master = base64.b64encode(bytes(range(32))).decode()
            settings = relay_settings(encryption_master_key_base64=master)
            options = ApiGatewaySettings(table_prefix=PREFIX, endpoint=stub.endpoint)
            provider = ApiGatewayProvider(settings, options)
            policy = Policy.from_toml(POLICY, source="test")
            store = DynamoStore(table)
            try:
                yield (
                    Relay.build(settings, provider=provider, policy=policy, store=store),
                    stub,
                    table,
                )
            finally:
                await provider.aclose()


def _deploy_tables(prefix: str) -> str:
    """The relay's and API Gateway's table stacks only (the rest of infra/ is not needed, and
    not every template deploys on moto); the state table's name."""
    from tests.e2e.harness import ROOT

    cloudformation = boto3.client("cloudformation")
    for stem in ("relay-tables", "apigateway-tables"):
        cloudformation.create_stack(
            StackName=f"{prefix}-{stem}",
            TemplateBody=(ROOT / "infra" / f"{stem}.yaml").read_text(),
            Parameters=[{"ParameterKey": "TablePrefix", "ParameterValue": prefix}],
        )
    return f"{prefix}-state"


async def _subscribed(relay: Relay, connection_id: str, channel: str) -> None:
    from providers.apigateway.port import DynamoPort
    from providers.apigateway.provider import ApiGatewayProvider
    from providers.apigateway.records import Connection

    provider = relay.provider
    assert isinstance(provider, ApiGatewayProvider)
    connection = Connection(connection_id, f"1.{len(connection_id)}", 2**40)
    await provider.store.add_connection(connection)
    await DynamoPort(provider.store, connection_id, connection=connection).join(channel, None)


async def test_apigateway_publishes_record_history_in_dynamodb_and_deliver_the_envelope(
    apigateway: tuple[Relay, ManagementStub, str],
) -> None:
    relay, stub, _ = apigateway
    await _subscribed(relay, "c1", "wrapped-a")
    for n in (1, 2, 3):
        await relay.publisher.publish(BACKEND, [EventRequest("update", ["wrapped-a"], {"n": n})])
    delivered = [orjson.loads(orjson.loads(body)["data"]) for body in stub.bodies("c1")]
    assert [d["data"] for d in delivered] == [{"n": 1}, {"n": 2}, {"n": 3}]
    ids = [d["id"] for d in delivered]
    assert [parse_id(i).seq for i in ids] == [1, 2, 3]
    page = await relay.authorizer.history(
        BACKEND, "wrapped-a", limit=10, since=ids[0], client_ip=None
    )
    assert [(m.id, orjson.loads(m.data)) for m in page.messages] == [
        (ids[1], {"n": 2}),
        (ids[2], {"n": 3}),
    ]


async def test_apigateway_keeps_nothing_of_an_encrypted_channel_granted_history(
    apigateway: tuple[Relay, ManagementStub, str],
) -> None:
    relay, stub, table = apigateway
    await _subscribed(relay, "c2", "private-encrypted-wrapped-a")
    await relay.publisher.publish(
        BACKEND, [EventRequest("update", ["private-encrypted-wrapped-a"], {"card": "4111"})]
    )
    [posted] = [orjson.loads(orjson.loads(body)["data"]) for body in stub.bodies("c2")]
    assert set(posted) == {"nonce", "ciphertext"}  # sealed, not enveloped
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    assert not [i for i in items if "encrypted" in i["pk"]["S"]]
    assert "4111" not in str(items)
