"""Publishing to AppSync: paths, chunks of 5, sizes checked before anything is sent, the API key
or the SigV4 signature on every call, errors mapped to the relay's kinds."""

from __future__ import annotations

import httpx
import orjson
import pytest

from core.errors import ConfigurationError, InvalidChannel, PayloadTooLarge, ProviderError
from core.provider import Message
from providers.appsync.provider import AppSyncProvider, encode_event
from providers.appsync.settings import MAX_EVENT_BYTES, AppSyncSettings
from providers.outbound.sigv4 import Credentials

DOMAIN = "example123.appsync-api.eu-west-1.amazonaws.com"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # AWS's documented example key
CREDS = Credentials("AKIDEXAMPLE", AWS_SECRET, "token")


class Recorder:
    """A stand-in Event API: records each call, answers as told."""

    def __init__(self, status: int = 200) -> None:
        self.calls: list[httpx.Request] = []
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        events = orjson.loads(request.content)["events"]
        ok = [{"identifier": f"id-{i}", "index": i} for i in range(len(events))]
        body = {"failed": [], "successful": ok} if self.status == 200 else {"errors": []}
        return httpx.Response(self.status, json=body)

    def bodies(self) -> list[dict[str, object]]:
        return [orjson.loads(c.content) for c in self.calls]


def _provider(recorder: Recorder, **settings: object) -> AppSyncProvider:
    http = httpx.AsyncClient(base_url=f"https://{DOMAIN}", transport=httpx.MockTransport(recorder))
    values: dict[str, object] = {"http_domain": DOMAIN, "region": "eu-west-1", **settings}
    return AppSyncProvider(AppSyncSettings(**values), http=http, credentials=lambda: CREDS)


async def test_consecutive_events_on_a_channel_go_five_to_a_call_in_order() -> None:
    recorder = Recorder()
    provider = _provider(recorder)
    messages = [Message("private-orders.1", "updated", f'{{"n":{i}}}', json=True) for i in range(7)]
    messages.append(Message("news", "headline", "plain text"))
    receipts = await provider.publish(messages)
    bodies = recorder.bodies()
    assert [(b["channel"], len(b["events"])) for b in bodies] == [  # type: ignore[arg-type]
        ("relay/private-orders/1", 5),
        ("relay/private-orders/1", 2),
        ("relay/news", 1),
    ]
    first = orjson.loads(bodies[0]["events"][0])  # type: ignore[index]
    assert first == {"event": "updated", "data": {"n": 0}}
    assert orjson.loads(bodies[2]["events"][0]) == {  # type: ignore[index]
        "event": "headline",
        "data": "plain text",
    }
    assert [r.channel for r in receipts] == [m.channel for m in messages]


async def test_each_call_is_signed_for_appsync_in_the_region() -> None:
    recorder = Recorder()
    await _provider(recorder).publish([Message("news", "x", "1", json=True)])
    headers = recorder.calls[0].headers
    assert headers["content-type"] == "application/json"
    assert "/eu-west-1/appsync/aws4_request" in headers["authorization"]
    assert headers["x-amz-security-token"] == "token"
    assert "x-api-key" not in headers


async def test_an_api_key_replaces_the_signature() -> None:
    recorder = Recorder()
    await _provider(recorder, api_key="da2-example").publish([Message("news", "x", "1")])
    headers = recorder.calls[0].headers
    assert headers["x-api-key"] == "da2-example"
    assert "authorization" not in headers


async def test_a_channel_without_a_path_is_refused_before_anything_is_sent() -> None:
    recorder = Recorder()
    with pytest.raises(InvalidChannel):
        await _provider(recorder).publish([Message("news", "x", "1"), Message("a_b", "x", "1")])
    assert recorder.calls == []


async def test_an_event_over_240_kb_is_refused_before_anything_is_sent() -> None:
    recorder = Recorder()
    big = "x" * MAX_EVENT_BYTES
    with pytest.raises(PayloadTooLarge) as caught:
        await _provider(recorder).publish([Message("news", "x", "1"), Message("news", "x", big)])
    assert caught.value.extra["item"] == 1
    assert recorder.calls == []


async def test_a_refusal_is_a_final_provider_error() -> None:
    recorder = Recorder(status=403)
    with pytest.raises(ProviderError) as caught:
        await _provider(recorder).publish([Message("news", "x", "1")])
    assert caught.value.retryable is False
    assert len(recorder.calls) == 1


async def test_no_credentials_and_no_key_is_said_plainly() -> None:
    recorder = Recorder()
    settings = AppSyncSettings(http_domain=DOMAIN)
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    provider = AppSyncProvider(settings, http=http, credentials=lambda: None)
    with pytest.raises(ProviderError, match="no AWS credentials"):
        await provider.publish([Message("news", "x", "1")])
    assert recorder.calls == []


def test_the_domain_or_an_endpoint_is_required() -> None:
    with pytest.raises(ConfigurationError, match="APPSYNC_HTTP_DOMAIN"):
        AppSyncProvider(AppSyncSettings())


def test_an_event_carries_its_id_when_it_has_one() -> None:
    event = encode_event(Message("news", "x", '"s"', id="m-1", json=True))
    assert orjson.loads(event) == {"event": "x", "data": "s", "id": "m-1"}


async def test_the_live_check_publishes_one_small_event() -> None:
    recorder = Recorder()
    said = await _provider(recorder).check()
    assert recorder.bodies() == [
        {"channel": "relay/relay-check", "events": ['{"event":"relay-check"}']}
    ]
    assert said == f"https://{DOMAIN} accepted a publish to relay/relay-check"
