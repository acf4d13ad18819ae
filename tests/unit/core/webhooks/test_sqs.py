"""The SQS queue on Lambda (moto): the handlers send, the consumer delivers a batch in order,
holding member_removed; the queue and its dead-letter queue from infra/webhooks-queue.yaml. A
return in a later batch cancels the held leave through the relay's store (DynamoDB, moto)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from core.provider import ChannelEvent
from core.stores.dynamodb import DynamoStore
from core.webhooks.delivery import Sender
from core.webhooks.sqs import SqsSink, Undelivered, consume
from tests.e2e.apigw_support import aws_environment, deploy_infra
from tests.unit.core.webhooks.conftest import config, sign

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

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


# --- a return in a later batch: the hold across invocations, through the store ------------------
HOLD = 3.0
T0 = 1_700_000_000_000  # the leave's time_ms


class Lambda:
    """The queue, the relay's store (the state table) and a backend, and the two functions'
    parts: a handler's sink and the consumer, on a clock the consumer's waits move."""

    def __init__(self, sqs: Any, outputs: dict[str, str], receiver: tuple[Receiver, str]) -> None:
        self.sqs, self.url = sqs, outputs["WebhookQueueUrl"]
        self.backend, backend_url = receiver
        self.store = DynamoStore(outputs["StateTableName"])
        self.config = config(backend_url, hold_seconds=HOLD)
        self.now = T0 / 1000
        self.during_hold: list[Callable[[], Awaitable[None]]] = []

    async def handler(self, *events: ChannelEvent) -> None:
        """One handler invocation: its events sent to the queue (returns noted) on settle."""
        sink = SqsSink(self.config, queue=self.url, client=self.sqs, store=self.store)
        sink.put(events)
        await sink.settle()

    async def consumer(self, *, again: bool = False) -> int:
        """One consumer invocation over what the queue hands out now; deleted once it returns,
        as the event source mapping does (`again`: left on the queue, for a redelivery)."""
        found = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10)
        messages = found.get("Messages", [])
        records = [{"body": m["Body"]} for m in messages]
        sender = Sender(self.config, sign)
        try:
            delivered = await consume(
                records, self.config, sender, store=self.store, clock=self.clock, sleep=self.wait
            )
        finally:
            await sender.aclose()
        for m in messages:
            if again:
                self.sqs.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return delivered

    def clock(self) -> float:
        return self.now

    async def wait(self, seconds: float) -> None:
        """The consumer's wait for a held event: what happens meanwhile, then the time."""
        while self.during_hold:
            await self.during_hold.pop(0)()
        self.now += seconds


@pytest.fixture
def aws_lambda(queue: tuple[Any, dict[str, str]], receiver: tuple[Receiver, str]) -> Lambda:
    return Lambda(*queue, receiver)


def at(
    kind: str, ms: int, channel: str = "presence-room", user: str | None = "bob"
) -> ChannelEvent:
    """An event `ms` after the leave."""
    return ChannelEvent(kind, channel, T0 + ms, user_id=user)


PAIRS = [("member_removed", "member_added", "bob"), ("channel_vacated", "channel_occupied", None)]


@pytest.mark.parametrize(("leave", "back", "user"), PAIRS, ids=["member", "channel"])
async def test_a_return_in_a_later_batch_cancels_the_held_leave(
    aws_lambda: Lambda, leave: str, back: str, user: str | None
) -> None:
    aws = aws_lambda
    await aws.handler(at(leave, 0, user=user))
    # The consumer holds the leave; SQS hands out no more of the channel's group meanwhile, so
    # the return, queued 1 s later, reaches the next invocation only.
    aws.during_hold.append(lambda: aws.handler(at(back, 1000, user=user)))
    assert await aws.consumer() == 0
    assert await aws.consumer(again=True) == 0  # the return that answers it is dropped too
    assert await aws.consumer() == 0  # and again when SQS delivers that batch again
    assert aws.backend.kinds() == []
    # A later leave with no return is delivered once its hold ends.
    await aws.handler(at(leave, 10_000, user=user))
    assert await aws.consumer() == 1
    assert aws.backend.kinds() == [(leave, "presence-room", user)]


async def test_a_return_after_the_hold_cancels_nothing(aws_lambda: Lambda) -> None:
    aws = aws_lambda
    await aws.handler(at("member_removed", 0))
    late = int(HOLD * 1000) + 500
    aws.during_hold.append(lambda: aws.handler(at("member_added", late)))
    assert await aws.consumer() == 1
    assert await aws.consumer() == 1
    assert aws.backend.kinds() == [
        ("member_removed", "presence-room", "bob"),
        ("member_added", "presence-room", "bob"),
    ]


async def test_flaps_within_one_hold_across_batches_leave_the_backend_right(
    aws_lambda: Lambda,
) -> None:
    """Leave, return, leave, return inside one hold, the first leave alone in its batch: the
    first pair is cancelled through the store, the second in the next batch."""
    aws = aws_lambda

    async def flaps() -> None:
        await aws.handler(at("member_added", 500))
        await aws.handler(at("member_removed", 1000))
        await aws.handler(at("member_added", 1500))

    await aws.handler(at("member_removed", 0), at("client_event", 0, "presence-room", None))
    aws.during_hold.append(flaps)
    assert await aws.consumer() == 1  # the client event, behind the held leave
    assert await aws.consumer() == 0
    assert aws.backend.kinds() == [("client_event", "presence-room", None)]


async def test_a_return_in_the_same_batch_needs_no_store_read(aws_lambda: Lambda) -> None:
    aws = aws_lambda
    await aws.handler(at("member_removed", 0), at("member_added", 1000))
    reads = 0
    get = aws.store.get

    async def counted(key: str) -> bytes | None:
        nonlocal reads
        reads += 1
        return await get(key)

    aws.store.get = counted  # type: ignore[method-assign]
    assert await aws.consumer() == 0
    assert (reads, aws.backend.kinds()) == (0, [])


async def test_without_the_store_a_held_leave_is_delivered(
    aws_lambda: Lambda, caplog: pytest.LogCaptureFixture
) -> None:
    aws = aws_lambda
    await aws.handler(at("member_removed", 0))
    aws.during_hold.append(lambda: aws.handler(at("member_added", 1000)))

    async def down(key: str) -> bytes | None:
        raise RuntimeError("the DynamoDB store failed: get_item")

    aws.store.get = down  # type: ignore[method-assign]
    assert await aws.consumer() == 1
    assert await aws.consumer() == 1  # a reconnect seen, never a leave lost
    assert [k[0] for k in aws.backend.kinds()] == ["member_removed", "member_added"]
    assert "the store unread (RuntimeError)" in caplog.text
    assert "bob" not in caplog.text
