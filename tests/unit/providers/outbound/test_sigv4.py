"""Known answers: the relay's SigV4 signer agrees with botocore's, byte for byte."""

from __future__ import annotations

import datetime
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from providers.outbound.sigv4 import Credentials, Signer

HOST = "abc123.execute-api.eu-west-1.amazonaws.com"
NOW = 1_700_000_000.0


def botocore_authorization(creds: Credentials, method: str, path: str, body: bytes) -> str:
    request = AWSRequest(method=method, url=f"https://{HOST}{path}", data=body)
    moment = datetime.datetime.fromtimestamp(NOW, datetime.UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        SigV4Auth(
            BotoCredentials(creds.access_key, creds.secret_key, creds.token),
            "execute-api",
            "eu-west-1",
        ).add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize("token", [None, "session/token+with=padding=="])
@pytest.mark.parametrize(
    ("method", "connection_id", "body"),
    [
        ("POST", "L0SM9cOFvHcCIhw=", b'{"event":"x","data":"{}"}'),
        ("DELETE", "PpGEacRJoAMCJbw=", b""),
        ("POST", "plain", "héllo".encode()),
    ],
)
def test_signature_matches_botocore(
    token: str | None, method: str, connection_id: str, body: bytes
) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    signer = Signer(lambda: creds, region="eu-west-1", clock=lambda: NOW)
    path = "/prod/@connections/" + quote(connection_id, safe="")
    headers = signer.headers(method, HOST, path, body)
    assert headers["authorization"] == botocore_authorization(creds, method, path, body)
    assert headers["x-amz-date"] == "20231114T221320Z"
    assert headers.get("x-amz-security-token") == token


def test_no_credentials_means_unsigned() -> None:
    signer = Signer(lambda: None, region="us-east-1")
    assert signer.headers("POST", HOST, "/@connections/x", b"") == {}


def test_the_signing_key_follows_the_date_and_the_secret() -> None:
    now = [NOW]
    creds = [Credentials("AKID", "secret-one")]
    signer = Signer(lambda: creds[0], region="eu-west-1", clock=lambda: now[0])
    first = signer.headers("POST", HOST, "/@connections/a", b"x")["authorization"]
    now[0] += 86_400  # the next day: a new scope and key
    second = signer.headers("POST", HOST, "/@connections/a", b"x")["authorization"]
    assert "20231115/eu-west-1" in second
    creds[0] = Credentials("AKID", "secret-two")  # rotated role credentials
    third = signer.headers("POST", HOST, "/@connections/a", b"x")["authorization"]
    assert len({first, second, third}) == 3
    expected = botocore_authorization(creds[0], "POST", "/@connections/a", b"x")
    now[0] = NOW
    assert signer.headers("POST", HOST, "/@connections/a", b"x")["authorization"] == expected
