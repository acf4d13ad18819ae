"""The apigateway provider's whole stack on this machine, with no AWS account: `make offline`.

moto in server mode stands in for DynamoDB, SQS, SSM and CloudFormation. infra/*.yaml are
deployed into it through CloudFormation (as a deployment without the framework would), the
secrets are put as SecureString parameters under /realtime-relay/offline (the functions read them
at cold start, with RELAY_ENV=production as deployed), then serverless-offline (v3) runs this
repository's serverless.yml with this machine's Python: the HTTP API, the WebSocket API and the
Lambda invoke endpoint, each on its port. Only the endpoints differ from AWS: boto3's
AWS_ENDPOINT_URL_<SERVICE> point at moto and at serverless-offline's Lambda endpoint,
APIGW_ENDPOINT at its WebSocket server. The apigateway end-to-end tests start the stack through
the same class (tests/e2e/offline.py) and run what `make offline` prints (Endpoints.describe).

    python -m infra.offline [--http-port 3000] [--websocket-port 3001] [--lambda-port 3002]
                            [--moto-port 3003]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from infra.offline_endpoints import (
    API_KEY,
    APP_ID,
    APP_KEY,
    APP_SECRET,
    DEFAULT_ENDPOINTS,
    JWT_SECRET,
    PREFIX,
    SECRETS,
    STAGE,
    Endpoints,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# The stack's names and credentials, for whoever starts it.
__all__ = [
    "API_KEY",
    "APP_ID",
    "APP_KEY",
    "APP_SECRET",
    "JWT_SECRET",
    "PREFIX",
    "SECRETS",
    "STAGE",
    "Endpoints",
    "OfflineStack",
    "deploy_tables",
    "main",
]
ROOT = Path(__file__).resolve().parents[1]
SERVERLESS = ROOT / "node_modules" / ".bin" / "serverless"
# Dummy credentials: moto takes any, serverless-offline checks none. boto3 and AWS CLI v1 both
# want a region.
AWS = {
    "AWS_ACCESS_KEY_ID": "offline-dummy",
    "AWS_SECRET_ACCESS_KEY": "offline-dummy",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# The infra/ stacks the offline stack (and the tests on moto) create: the tables and the webhook
# queue; a new template that moto cannot create stays out until it can.
OFFLINE_STACKS = frozenset({"apigateway-tables", "relay-tables", "webhooks-queue"})


def deploy_tables(cloudformation: Any, prefix: str) -> dict[str, str]:
    """Create the stacks moto can run (the tables and queues of OFFLINE_STACKS) with
    `TablePrefix=prefix`; return their outputs."""
    outputs: dict[str, str] = {}
    for template in sorted((ROOT / "infra").glob("*.yaml")):
        if template.stem not in OFFLINE_STACKS:
            continue  # appsync-events: moto has no AppSync Event API (docs/providers/appsync.md)
        stack = f"{prefix}-{template.stem}"
        cloudformation.create_stack(
            StackName=stack,
            TemplateBody=template.read_text(),
            Parameters=[{"ParameterKey": "TablePrefix", "ParameterValue": prefix}],
        )
        found = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        outputs.update({o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])})
    return outputs


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


def _wait(url: str, process: subprocess.Popen[bytes], what: str, log: Path, timeout: float) -> None:
    """Until `url` answers 200; fail with the log if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')}")
        try:
            # The first request to serverless-offline also starts the function's Python.
            if httpx.get(url, timeout=20).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not start: {log.read_text(errors='replace')}")


class MotoServer:
    """`moto_server` on one port."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        moto = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(  # noqa: S603 - this virtualenv's moto_server
            [str(moto), "-H", "127.0.0.1", "-p", str(port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **AWS},
        )
        try:
            _wait(f"{self.endpoint}/moto-api/", self.process, "moto_server", log_path, 30)
        except BaseException:
            self.stop()
            raise

    def client(self, service: str) -> Any:
        """A boto3 client of this server."""
        import boto3

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

    def __init__(
        self,
        folder: Path,
        endpoints: Endpoints = DEFAULT_ENDPOINTS,
        *,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.base = endpoints.base
        self.log_path = folder / "serverless-offline.log"
        self.moto = MotoServer(endpoints.moto, folder / "moto.log")
        self._log = self.log_path.open("wb")
        self.process: subprocess.Popen[bytes] | None = None
        try:
            deploy_tables(self.moto.client("cloudformation"), PREFIX)
            ssm = self.moto.client("ssm")
            for name, value in SECRETS.items():
                ssm.put_parameter(
                    Name=f"/realtime-relay/{STAGE}/{name}", Value=value, Type="SecureString"
                )
            self._start(extra_env or {})
        except BaseException:
            self.stop()
            raise

    @property
    def port(self) -> int:
        """The port pusher-js connects to: the WebSocket API's."""
        return self.endpoints.websocket

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
            "AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{self.endpoints.functions}",
            "APIGW_ENDPOINT": f"http://127.0.0.1:{self.endpoints.websocket}",
        }
        # The functions' settings are serverless.yml's, the secrets SSM's, plus `extra_env`.
        env = {k: v for k, v in env.items() if not k.startswith(("RELAY_", "APIGW_TABLE"))}
        env.update(extra_env)
        command = [
            *(node, str(SERVERLESS), "offline", "start", "--stage", STAGE),
            *("--param", "provider=apigateway", "--host", "127.0.0.1", "--noSponsor"),
            *(
                "--httpPort",
                str(self.endpoints.http),
                "--websocketPort",
                str(self.endpoints.websocket),
            ),
            *("--lambdaPort", str(self.endpoints.functions)),
        ]
        self.process = subprocess.Popen(  # noqa: S603 - this repository's serverless
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait(self.base + "/health", self.process, "serverless offline", self.log_path, 90)

    def ws_path(self, token: str | None) -> str:
        """pusher-js's wsPath for a user (Endpoints.ws_path)."""
        return self.endpoints.ws_path(token)

    def publish(self, body: dict[str, Any]) -> httpx.Response:
        """POST /v1/events to the HTTP function with the backend key."""
        return httpx.post(
            self.base + "/v1/events", json=body, headers={"X-API-Key": API_KEY}, timeout=30
        )

    def log(self) -> str:
        """What serverless-offline (and the functions) printed."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop serverless-offline (and its function processes), then moto."""
        if self.process is not None:
            _stop(self.process, group=True)
        self._log.close()
        self.moto.stop()


def _busy(endpoints: Endpoints) -> list[str]:
    busy = []
    for name, port in endpoints._asdict().items():
        with socket.socket() as probe:
            # As the servers do: a port whose last connections linger in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                busy.append(f"{port} ({name})")
    return busy


def main(argv: Sequence[str] | None = None) -> int:
    """Start the stack, print the client settings, run until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m infra.offline", description=__doc__)
    defaults = DEFAULT_ENDPOINTS
    parser.add_argument("--http-port", type=int, default=defaults.http)
    parser.add_argument("--websocket-port", type=int, default=defaults.websocket)
    parser.add_argument("--lambda-port", type=int, default=defaults.functions)
    parser.add_argument("--moto-port", type=int, default=defaults.moto)
    args = parser.parse_args(argv)
    endpoints = Endpoints(args.http_port, args.websocket_port, args.lambda_port, args.moto_port)
    busy = _busy(endpoints)
    if busy:
        print(f"offline: in use: {', '.join(busy)}; choose others (--help)", file=sys.stderr)
        return 2
    folder = ROOT / ".tmp" / "offline"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"offline: starting moto, the tables and serverless offline (logs: {folder})", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where a shell ignored it
    started = time.monotonic()
    try:
        stack = OfflineStack(folder, endpoints)
    except RuntimeError as exc:
        print(f"offline: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"offline: ready in {time.monotonic() - started:.0f} s, stage {STAGE}", flush=True)
        for line in endpoints.describe():
            print(f"  {line}", flush=True)
        print("offline: Ctrl-C stops it", flush=True)
        assert stack.process is not None
        stack.process.wait()
        print(f"offline: serverless offline exited: {stack.log()[-2000:]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
