"""The SQS queue on Lambda (moto): the handlers send, the consumer delivers a batch in order,
holding member_removed; the queue and its dead-letter queue from infra/webhooks-queue.yaml."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from core.provider import ChannelEvent
from core.webhooks.delivery import Sender
from core.webhooks.sqs import SqsSink, Undelivered, consume
from tests.e2e.apigw_support import aws_environment, deploy_infra
from tests.unit.core.webhooks.conftest import config, sign

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.unit.core.webhooks.receiver import Receiver


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, dict[str, str]]]:
    aws_environment(monkeypatch)
    with mock_aws():
        yield boto3.client("sqs"), deploy_infra()


def ev(kind: str, channel: str = "presence-room", user: str | None = None) -> ChannelEvent:
    return ChannelEvent(kind, channel, int(time.time() * 1000), user_id=user)


def receive(sqs: Any, url: str) -> list[dict[str, Any]]:
    found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [{"body": m["Body"], "receiptHandle": m["ReceiptHandle"]} for m in found["Messages"]]


async def test_events_sent_by_a_handler_are_delivered_by_the_consumer(
    queue: tuple[Any, dict[str, str]], receiver: tuple[Receiver, str]
) -> None:
    sqs, outputs = queue
    backend, url = receiver
    url_q = outputs["WebhookQueueUrl"]
    assert url_q.endswith(".fifo")
    cfg = config(url, hold_seconds=0.2)
    sink = SqsSink(cfg, queue=url_q, client=sqs)
    sink.put([ev("channel_occupied"), ev("member_added", user="ann")])
    sink.put([ev("member_removed", user="bob"), ev("member_added", user="bob")])
    sink.put([ev("client_event", "private-x")])
    await sink.settle()
    records = receive(sqs, url_q)
    assert len(records) == 5
    sender = Sender(cfg, sign)
    delivered = await consume(records, cfg, sender)
    await sender.aclose()
    assert delivered == 3  # bob's leave and return cancelled each other
    assert sorted(backend.kinds()) == sorted(
        [
            ("channel_occupied", "presence-room", None),
            ("member_added", "presence-room", "ann"),
            ("client_event", "private-x", None),
        ]
    )
    presence = [k for k in backend.kinds() if k[1] == "presence-room"]
    assert presence[0][0] == "channel_occupied"  # the channel's order


async def test_an_undelivered_batch_raises_for_sqs_to_retry(
    queue: tuple[Any, dict[str, str]], receiver: tuple[Receiver, str]
) -> None:
    sqs, outputs = queue
    backend, url = receiver
    backend.failures = [500]
    cfg = config(url, attempts=1)
    sink = SqsSink(cfg, queue="relay-unit-webhooks.fifo", client=sqs)  # a name
    sink.put([ev("cache_miss", "cache-a")])
    await sink.settle()
    records = receive(sqs, outputs["WebhookQueueUrl"])
    sender = Sender(cfg, sign)
    with pytest.raises(Undelivered):
        await consume(records, cfg, sender)
    assert await consume(records, cfg, sender) == 1  # SQS's redelivery
    await sender.aclose()


def test_the_queue_has_a_dead_letter_queue(queue: tuple[Any, dict[str, str]]) -> None:
    sqs, outputs = queue
    attributes = sqs.get_queue_attributes(
        QueueUrl=outputs["WebhookQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    assert "webhooks-dlq.fifo" in attributes["RedrivePolicy"]
    assert attributes["FifoQueue"] == "true"
