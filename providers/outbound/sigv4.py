"""AWS Signature Version 4 for the relay's calls to AWS: API Gateway's management API (POST and
DELETE @connections, service `execute-api`) and AppSync Events' publish (service `appsync`).

botocore's signer costs about 0.3 ms a request (a new canonical request object, header copies);
a fan-out to a thousand connections makes that a third of a second of CPU. This one derives the
signing key once a day and hashes one short string per request. Its output is checked against
botocore's in tests/unit/providers/outbound/test_sigv4.py. Free of httpx and botocore until
credentials are first looked up.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from msgspec import Struct

if TYPE_CHECKING:
    from collections.abc import Callable

ALGORITHM = "AWS4-HMAC-SHA256"


class Credentials(Struct, frozen=True):
    """An access key pair, with the session token temporary credentials carry."""

    access_key: str
    secret_key: str
    token: str | None = None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class EnvironmentCredentials:
    """The credentials boto3 would use (Lambda's role, the environment, a profile), looked up
    once; temporary ones are refreshed by botocore when they near expiry."""

    def __init__(self) -> None:
        self._source: Any = None
        self._looked = False

    def __call__(self) -> Credentials | None:
        """The current credentials, or None when there are none."""
        if not self._looked:
            import botocore.session

            self._source = botocore.session.get_session().get_credentials()
            self._looked = True
        if self._source is None:
            return None
        frozen = self._source.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


class Signer:
    """Signs requests for one service in one region."""

    def __init__(
        self,
        credentials: Callable[[], Credentials | None],
        *,
        region: str,
        service: str = "execute-api",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self._region = region
        self._service = service
        self._clock = clock
        self._key: tuple[str, str, bytes] | None = None  # (date, secret, derived key)

    def _signing_key(self, secret: str, date: str) -> bytes:
        if self._key is None or self._key[:2] != (date, secret):
            key = _hmac(("AWS4" + secret).encode(), date)
            for part in (self._region, self._service, "aws4_request"):
                key = _hmac(key, part)
            self._key = (date, secret, key)
        return self._key[2]

    def headers(self, method: str, host: str, path: str, body: bytes = b"") -> dict[str, str]:
        """The headers that sign `method https://host/path` (path already percent-encoded)."""
        creds = self._credentials()
        if creds is None:
            return {}  # serverless-offline and moto accept unsigned calls
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        date = stamp[:8]
        signed = {"host": host, "x-amz-date": stamp}
        if creds.token:
            signed["x-amz-security-token"] = creds.token
        names = ";".join(sorted(signed))
        canonical = "\n".join(
            (
                method,
                # Services other than S3 sign the path encoded once more.
                quote(path, safe="/~"),
                "",
                "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)),
                names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(
            self._signing_key(creds.secret_key, date), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {k: v for k, v in signed.items() if k != "host"}
        headers["authorization"] = (
            f"{ALGORITHM} Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return headers
