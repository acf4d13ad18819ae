"""Publishing to AppSync Events, checked against what AWS documents and what botocore signs.

- SigV4 known answers: the relay's signer (providers/outbound/sigv4.py, service `appsync`)
  against botocore's SigV4Auth, byte for byte, on the publish the relay sends.
- A local stand-in for the Event API's HTTP endpoint, served on a real socket, that verifies each
  request's signature the way AWS does (the headers it names in SignedHeaders, recomputed by
  botocore with the same credentials) and answers as AWS documents a publish
  (https://docs.aws.amazon.com/appsync/latest/eventapi/publish-http.html: `POST /event`,
  `{"channel", "events": [stringified JSON, at most 5]}`; the answer lists `successful` and
  `failed` events by index, the shape moto's own stand-in answers too).
"""

from __future__ import annotations

import datetime
import re
from typing import TYPE_CHECKING, Any
from unittest import mock

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.errors import ProviderError
from core.provider import Message
from providers.appsync.provider import AppSyncProvider
from providers.appsync.settings import MAX_EVENT_BYTES, AppSyncSettings
from providers.outbound.sigv4 import Credentials, Signer
from tests.servers import serve

if TYPE_CHECKING:
    from starlette.requests import Request

REGION = "eu-west-1"
HOST = "example123abc.appsync-api.eu-west-1.amazonaws.com"
NOW = 1_700_000_000.0
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # AWS's documented example key
CREDS = Credentials("AKIDEXAMPLE", AWS_SECRET, "session+token==")
AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+), "
    r"SignedHeaders=(?P<names>[^,]+), Signature=(?P<signature>[0-9a-f]{64})"
)


def botocore_signature(
    creds: Credentials, url: str, body: bytes, headers: dict[str, str], stamp: str
) -> str:
    """botocore's Authorization for the request, signed at `stamp`."""
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    moment = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        boto = BotoCredentials(creds.access_key, creds.secret_key, creds.token)
        SigV4Auth(boto, "appsync", REGION).add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize("token", [None, CREDS.token])
@pytest.mark.parametrize(
    "body",
    [
        b'{"channel":"relay/news","events":["{\\"event\\":\\"x\\",\\"data\\":1}"]}',
        '{"channel":"relay/private-orders/1","events":["{\\"data\\":\\"héllo\\"}"]}'.encode(),
    ],
)
def test_the_signer_agrees_with_botocore_for_appsync(token: str | None, body: bytes) -> None:
    creds = Credentials(CREDS.access_key, CREDS.secret_key, token)
    signer = Signer(lambda: creds, region=REGION, service="appsync", clock=lambda: NOW)
    headers = signer.headers("POST", HOST, "/event", body)
    assert headers["x-amz-date"] == "20231114T221320Z"
    expected = botocore_signature(creds, f"https://{HOST}/event", body, {}, headers["x-amz-date"])
    assert headers["authorization"] == expected
    assert f"/{REGION}/appsync/aws4_request" in expected


class StandIn:
    """The Event API's publish endpoint: verifies SigV4 as AWS does, checks the documented body,
    records what it accepted."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, list[Any]]] = []
        self.refused: list[str] = []

    async def event(self, request: Request) -> JSONResponse:
        body = await request.body()
        problem = self._verify(request, body)
        if problem is not None:
            self.refused.append(problem)
            return JSONResponse({"errors": [{"errorType": "UnauthorizedException"}]}, 401)
        document = orjson.loads(body)
        events = document.get("events")
        channel = document.get("channel")
        if (
            not isinstance(channel, str)
            or not isinstance(events, list)
            or not 1 <= len(events) <= 5
        ):
            return JSONResponse({"errors": [{"errorType": "BadRequestException"}]}, 400)
        for event in events:  # each a stringified JSON value within 240 KB
            if not isinstance(event, str) or len(event.encode()) > MAX_EVENT_BYTES:
                return JSONResponse({"errors": [{"errorType": "BadRequestException"}]}, 400)
            orjson.loads(event)
        self.accepted.append((channel, [orjson.loads(e) for e in events]))
        successful = [
            {"identifier": f"{len(self.accepted)}-{i}", "index": i} for i in range(len(events))
        ]
        return JSONResponse({"failed": [], "successful": successful})

    def _verify(self, request: Request, body: bytes) -> str | None:
        found = AUTH.fullmatch(request.headers.get("authorization", ""))
        if found is None:
            return "no SigV4 authorization"
        if found["key"] != CREDS.access_key or not found["scope"].endswith(
            f"/{REGION}/appsync/aws4_request"
        ):
            return "wrong key or scope"
        names = found["names"].split(";")
        if "host" not in names or "x-amz-date" not in names:
            return "host and x-amz-date must be signed"
        signed = {n: request.headers[n] for n in names if n != "host"}
        url = f"http://{request.headers['host']}{request.url.path}"
        expected = botocore_signature(CREDS, url, body, signed, request.headers["x-amz-date"])
        return None if expected == request.headers["authorization"] else "signature mismatch"


@pytest.fixture
async def stand_in() -> Any:
    events = StandIn()
    app = Starlette(routes=[Route("/event", events.event, methods=["POST"])])
    async with serve(app, lifespan="off") as server:
        yield events, server.http_url


def _provider(url: str, creds: Credentials = CREDS) -> AppSyncProvider:
    settings = AppSyncSettings(endpoint=url, region=REGION, max_attempts=1)
    return AppSyncProvider(settings, credentials=lambda: creds)


async def test_a_publish_reaches_the_stand_in_signed_and_chunked(stand_in: Any) -> None:
    events, url = stand_in
    provider = _provider(url)
    try:
        messages = [
            Message("private-orders.1", "updated", f'{{"n":{i}}}', json=True) for i in range(6)
        ]
        receipts = await provider.publish(
            [*messages, Message("news", "headline", "text", id="m-1")]
        )
    finally:
        await provider.aclose()
    assert events.refused == []
    assert [(c, len(e)) for c, e in events.accepted] == [
        ("relay/private-orders/1", 5),
        ("relay/private-orders/1", 1),
        ("relay/news", 1),
    ]
    assert events.accepted[0][1][0] == {"event": "updated", "data": {"n": 0}}
    assert events.accepted[2][1] == [{"event": "headline", "data": "text", "id": "m-1"}]
    assert len(receipts) == 7


async def test_a_wrong_secret_is_refused_by_the_stand_in_and_not_retried(stand_in: Any) -> None:
    events, url = stand_in
    wrong = Credentials(CREDS.access_key, "not-the-secret", CREDS.token)
    provider = _provider(url, wrong)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.publish([Message("news", "x", "1", json=True)])
    finally:
        await provider.aclose()
    assert events.refused == ["signature mismatch"]
    assert caught.value.retryable is False
    assert caught.value.extra["provider_status"] == 401
