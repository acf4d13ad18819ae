"""Webhooks on apigateway, end to end offline: pusher-js against serverless-offline running this
repository's serverless.yml (moto in server mode for DynamoDB, SQS and SSM). The WebSocket
functions send their channel events to the FIFO queue of infra/webhooks-queue.yaml; this test
plays the SQS event source mapping (serverless-offline runs none): it receives the queue's
messages from moto and invokes the `webhooks` function with them, which delivers to a receiver
that verifies each request with the Pusher SDK."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from infra.offline_endpoints import APP_KEY, APP_SECRET, PREFIX, STAGE
from tests.e2e.apigw_support import CHAT_POLICY
from tests.e2e.offline import ApiGatewayAgent, start_stack
from tests.e2e.test_apigateway_offline import token
from tests.unit.core.webhooks.receiver import Receiver, ReceiverThread

if TYPE_CHECKING:
    from pathlib import Path

    from infra.offline import OfflineStack

pytestmark = pytest.mark.e2e


def drain_queue(stack: OfflineStack, queue_url: str) -> list[dict[str, Any]]:
    """Every message waiting on the queue, as an SQS event's records (deleted from the queue)."""
    sqs = stack.moto.client("sqs")
    records: list[dict[str, Any]] = []
    while True:
        found = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = found.get("Messages", [])
        if not messages:
            return records
        for m in messages:
            records.append({"messageId": m["MessageId"], "body": m["Body"]})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def invoke_consumer(stack: OfflineStack, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The webhooks function, invoked through serverless-offline's Lambda endpoint."""
    import boto3

    functions = boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{stack.endpoints.functions}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    answer = functions.invoke(
        FunctionName=f"realtime-relay-{STAGE}-webhooks",
        Payload=orjson.dumps({"Records": records}),
    )
    result: dict[str, Any] = orjson.loads(answer["Payload"].read())
    return result


def test_apigateway_presence_events_reach_the_backend_through_sqs(tmp_path: Path) -> None:
    receiver = Receiver(app_key=APP_KEY, app_secret=APP_SECRET)
    policy = tmp_path / "policy.toml"
    policy.write_text(CHAT_POLICY)
    with ReceiverThread(receiver) as url:
        queue_name = f"{PREFIX}-webhooks.fifo"
        env = {"RELAY_POLICY_FILE": str(policy), "RELAY_WEBHOOK_URL": url}
        stack = start_stack(tmp_path, extra_env=env)
        agent = None
        try:
            queue_url = stack.moto.client("sqs").get_queue_url(QueueName=queue_name)["QueueUrl"]
            agent = ApiGatewayAgent(stack)
            lobby = "presence-chat-hooks"
            agent.connect("ann", token("ann", "Ann"))
            assert agent.subscribe("ann", lobby)["members"] == ["ann"]
            agent.connect("ben", token("ben", "Ben"))
            assert agent.subscribe("ben", lobby)["members"] == ["ann", "ben"]
            agent.send(op="trigger", client="ben", channel=lobby, event="client-hi", data={})
            agent.expect(
                lambda o: o.get("client") == "ann" and o.get("event") == "client-hi", timeout=20
            )
            agent.send(op="disconnect", client="ben")
            deadline = time.monotonic() + 30
            records: list[dict[str, Any]] = []
            while len(records) < 5 and time.monotonic() < deadline:
                records += drain_queue(stack, queue_url)
            kinds = [orjson.loads(r["body"])["kind"] for r in records]
            assert len(records) == 5, kinds
            assert invoke_consumer(stack, records) == {"delivered": 5}
            receiver.wait_sync(5)
        finally:
            if agent is not None:
                agent.close()
            stack.stop()
    assert [(e["name"], e.get("user_id")) for e in receiver.events] == [
        ("channel_occupied", None),
        ("member_added", "ann"),
        ("member_added", "ben"),
        ("client_event", "ben"),
        ("member_removed", "ben"),
    ]
    assert receiver.refused == []
