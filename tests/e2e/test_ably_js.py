"""ably-js with the relay's /auth/token as authUrl, against a local fake of Ably's token endpoint.

`relay serve` runs with RELAY_PROVIDER=ably and ABLY_REST_HOST pointing here; ably-js (Node)
fetches the TokenRequest from the relay and posts it to `POST /keys/{keyName}/requestToken`,
which this test serves. What arrives must be exactly what the relay signed: the fields the relay
compiles for the user, and a MAC that verifies with the key's secret over all of them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from core.settings import Settings
from core.tokens import mint_dev_token
from providers.ably.token import token_mac
from tests.e2e.conftest import JWT_SECRET, RELAY_ENV
from tests.e2e.harness import ROOT, RelayProcess, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e

KEY_NAME = "e2eApp.e2eKey"
SECRET = "e2e-ably-key-secret"
SCRIPT = ROOT / "tests" / "e2e" / "js" / "ably_token.mjs"
TOKEN_FIELDS = {"keyName", "ttl", "capability", "clientId", "timestamp", "nonce", "mac"}


class TokenEndpoint(BaseHTTPRequestHandler):
    """Ably's requestToken route: records each TokenRequest, answers TokenDetails."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        request = json.loads(body)  # ably-js in Node posts TokenRequests as JSON
        self.received.append(
            {
                "path": self.path,
                "authorization": self.headers.get("authorization"),
                "request": request,
            }
        )
        details = {
            "token": "fake-ably-token",
            "keyName": request.get("keyName"),
            "issued": request.get("timestamp"),
            "expires": request.get("timestamp", 0) + request.get("ttl", 0),
            "capability": request.get("capability"),
            "clientId": request.get("clientId"),
        }
        answer = json.dumps(details).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what it needs from `received`."""


@pytest.fixture(scope="module")
def ably_endpoint() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def ably_relay(
    ably_endpoint: ThreadingHTTPServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RelayProcess]:
    env = {
        **RELAY_ENV,
        "RELAY_PROVIDER": "ably",
        "ABLY_API_KEY": f"{KEY_NAME}:{SECRET}",
        "ABLY_REST_HOST": "127.0.0.1",
        "ABLY_REST_PORT": str(ably_endpoint.server_address[1]),
        "ABLY_TLS": "false",
    }
    process = RelayProcess(env, tmp_path_factory.mktemp("ably") / "relay.log")
    yield process
    process.stop()


def _ably_js(
    relay: RelayProcess, endpoint: ThreadingHTTPServer, method: str, token: str | None
) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is not installed: install Node.js 20"
    env = {
        **os.environ,
        "AUTH_URL": f"{relay.base}/auth/token",
        "AUTH_METHOD": method,
        "ABLY_HOST": "127.0.0.1",
        "ABLY_PORT": str(endpoint.server_address[1]),
    }
    if token is not None:
        env["RELAY_TOKEN"] = token
    done = subprocess.run(
        [node, str(SCRIPT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _user_token(user_id: str) -> str:
    return mint_dev_token(Settings(jwt_secret=JWT_SECRET), user_id=user_id)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_ably_js_forwards_the_relays_token_request_unchanged(
    ably_relay: RelayProcess, ably_endpoint: ThreadingHTTPServer, method: str
) -> None:
    TokenEndpoint.received.clear()
    result = _ably_js(ably_relay, ably_endpoint, method, _user_token("alice"))
    assert result["ok"] is True, result
    assert (result["token"], result["clientId"]) == ("fake-ably-token", "alice")

    (call,) = TokenEndpoint.received
    assert call["path"] == f"/keys/{KEY_NAME}/requestToken"
    assert call["authorization"] is None  # a signed TokenRequest needs no credentials
    request = call["request"]
    assert set(request) == TOKEN_FIELDS
    assert request["keyName"] == KEY_NAME
    assert request["clientId"] == "alice"
    assert request["ttl"] == 3_600_000
    assert json.loads(request["capability"]) == {"private-user-alice": ["history", "subscribe"]}
    # Only the relay holds the secret: a MAC that verifies means no field changed on the way.
    assert request["mac"] == token_mac(
        SECRET,
        key_name=request["keyName"],
        ttl_ms=request["ttl"],
        capability=request["capability"],
        client_id=request["clientId"],
        timestamp_ms=request["timestamp"],
        nonce=request["nonce"],
    )
    assert SECRET not in ably_relay.log()


def test_ably_js_without_a_login_gets_no_token_request(
    ably_relay: RelayProcess, ably_endpoint: ThreadingHTTPServer
) -> None:
    TokenEndpoint.received.clear()
    result = _ably_js(ably_relay, ably_endpoint, "GET", None)
    assert result["ok"] is False
    assert result["statusCode"] == 401
    assert TokenEndpoint.received == []
