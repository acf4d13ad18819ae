"""The apigateway provider's stack on this machine: moto in server mode (DynamoDB, SQS, SSM and
CloudFormation) and serverless-offline (v3) running this repository's serverless.yml.

The stack is deployed the way the docs say: infra/*.yaml through CloudFormation (into moto), the
secrets as SecureString parameters under /realtime-relay/<stage> (read by the functions at cold
start), then the functions. Only the endpoints differ: boto3's AWS_ENDPOINT_URL_<SERVICE> point
at moto and at serverless-offline's Lambda endpoint, APIGW_ENDPOINT at its WebSocket server.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx

from tests.e2e.harness import ROOT, PusherAgent, free_port

if TYPE_CHECKING:
    from collections.abc import Mapping

SERVERLESS = ROOT / "node_modules" / ".bin" / "serverless"
APIGW_AGENT = ROOT / "tests" / "e2e" / "js" / "apigw_agent.mjs"
STAGE = "offline"
PREFIX = f"realtime-relay-{STAGE}"
APP_KEY = "offline-key"
APP_SECRET = "offline-app-secret-0123456789"
JWT_SECRET = "offline-jwt-secret-0123456789abcdef0123456789"
API_KEY = "offline-api-key-0123456789"
# Dummy credentials: moto takes any, serverless-offline checks none.
AWS = {
    "AWS_ACCESS_KEY_ID": "offline-dummy",
    "AWS_SECRET_ACCESS_KEY": "offline-dummy",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SECRETS = {
    "RELAY_APP_ID": "4242",
    "RELAY_APP_KEY": APP_KEY,
    "RELAY_APP_SECRET": APP_SECRET,
    "RELAY_JWT_SECRET": JWT_SECRET,
    "RELAY_API_KEYS": API_KEY,
}


def _stop(process: subprocess.Popen[bytes], *, group: bool = False) -> None:
    if process.poll() is None:
        # serverless-offline starts one Python process per function instance: its whole
        # process group (started for it alone) is stopped with it.
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait()
    if group:
        # Handler processes may outlive their parent by a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


class MotoServer:
    """`moto_server` on a free port."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("wb")
        moto = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **AWS},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not start: {log_path.read_text()}")

    def client(self, service: str) -> Any:
        """A boto3 client of this server."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=AWS["AWS_REGION"],
            aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        )

    def stop(self) -> None:
        """Stop the server."""
        _stop(self.process)
        self._log.close()


class OfflineStack:
    """moto, the infra stacks and secrets in it, then `serverless offline` for apigateway."""

    def __init__(self, folder: Path, *, extra_env: Mapping[str, str] | None = None) -> None:
        self.moto = MotoServer(folder / "moto.log")
        self.http_port, self.ws_port, self.lambda_port = free_port(), free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.log_path = folder / "serverless-offline.log"
        self._log = self.log_path.open("wb")
        self.process: subprocess.Popen[bytes] | None = None
        try:
            self._deploy()
            self._start(extra_env or {})
        except BaseException:
            self.stop()
            raise

    @property
    def port(self) -> int:
        """What PusherAgent calls the relay's port: here, the WebSocket server's."""
        return self.ws_port

    def _deploy(self) -> None:
        cloudformation = self.moto.client("cloudformation")
        for template in sorted((ROOT / "infra").glob("*.yaml")):
            cloudformation.create_stack(
                StackName=f"{PREFIX}-{template.stem}",
                TemplateBody=template.read_text(),
                Parameters=[{"ParameterKey": "TablePrefix", "ParameterValue": PREFIX}],
            )
        ssm = self.moto.client("ssm")
        for name, value in SECRETS.items():
            ssm.put_parameter(
                Name=f"/realtime-relay/{STAGE}/{name}", Value=value, Type="SecureString"
            )

    def _start(self, extra_env: Mapping[str, str]) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed: install Node.js 20")
        venv_bin = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            **AWS,
            # serverless-offline runs `python3` from PATH: this virtualenv's.
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
            "VIRTUAL_ENV": str(Path(sys.executable).parents[1]),
            "SLS_TELEMETRY_DISABLED": "1",
            "SLS_NOTIFICATIONS_MODE": "off",
            "AWS_ENDPOINT_URL_DYNAMODB": self.moto.endpoint,
            "AWS_ENDPOINT_URL_SQS": self.moto.endpoint,
            "AWS_ENDPOINT_URL_SSM": self.moto.endpoint,
            "AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{self.lambda_port}",
            "APIGW_ENDPOINT": f"http://127.0.0.1:{self.ws_port}",
        }
        # The functions' settings are serverless.yml's, the secrets SSM's, plus `extra_env`.
        env = {k: v for k, v in env.items() if not k.startswith(("RELAY_", "APIGW_TABLE"))}
        env.update(extra_env)
        self.process = subprocess.Popen(
            [
                node,
                str(SERVERLESS),
                "offline",
                "start",
                "--stage",
                STAGE,
                "--param",
                "provider=apigateway",
                "--host",
                "127.0.0.1",
                "--httpPort",
                str(self.http_port),
                "--websocketPort",
                str(self.ws_port),
                "--lambdaPort",
                str(self.lambda_port),
                "--noSponsor",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serverless offline exited: {self.log()}")
            try:
                # The first request also starts the HTTP function's Python process.
                if httpx.get(self.base + "/health", timeout=20).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError(f"serverless offline did not start: {self.log()}")

    def log(self) -> str:
        """What serverless-offline (and the functions) printed."""
        return self.log_path.read_text(errors="replace")

    def publish(self, body: dict[str, Any]) -> httpx.Response:
        """POST /v1/events to the HTTP function with the backend key."""
        return httpx.post(
            self.base + "/v1/events", json=body, headers={"X-API-Key": API_KEY}, timeout=30
        )

    def stop(self) -> None:
        """Stop serverless-offline (and its function processes), then moto."""
        if self.process is not None:
            _stop(self.process, group=True)
        self._log.close()
        self.moto.stop()


class ApiGatewayAgent(PusherAgent):
    """PusherAgent driving tests/e2e/js/apigw_agent.mjs: the token travels in the URL."""

    def __init__(self, stack: OfflineStack) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed: install Node.js 20")
        self.relay = stack  # type: ignore[assignment]  # port and base are all it reads
        self.app_key = APP_KEY
        self.process = subprocess.Popen(
            [node, str(APIGW_AGENT)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.seen = []
        self._inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect(lambda o: o["type"] == "ready")

    def connect(self, client: str, token: str | None = None, *, ws_port: int | None = None) -> str:
        """Connect and wait for pusher:connection_established (cold functions take seconds)."""
        self.send(
            op="connect",
            client=client,
            key=self.app_key,
            host="127.0.0.1",
            wsPort=ws_port or self.relay.port,
            base=self.relay.base,
            token=token,
            stage=STAGE,
        )
        found = self.expect(
            lambda o: o.get("client") == client and o.get("state") == "connected", timeout=60
        )
        socket_id: str = found["socket_id"]
        return socket_id
