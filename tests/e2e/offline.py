"""pusher-js against the apigateway provider's stack on this machine: the stack is `make offline`'s
(infra/offline.py: moto in server mode, the infra stacks and secrets in it, serverless-offline
running this repository's serverless.yml), started here on free ports."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
from typing import TYPE_CHECKING, Any

from infra.offline import OfflineStack
from infra.offline_endpoints import APP_KEY, Endpoints
from tests.e2e.harness import ROOT, PusherAgent, free_port

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

APIGW_AGENT = ROOT / "tests" / "e2e" / "js" / "apigw_agent.mjs"


def start_stack(folder: Path, *, extra_env: Mapping[str, str] | None = None) -> OfflineStack:
    """The stack `make offline` starts, on free ports."""
    endpoints = Endpoints(free_port(), free_port(), free_port(), free_port())
    return OfflineStack(folder, endpoints, extra_env=extra_env)


class ApiGatewayAgent(PusherAgent):
    """PusherAgent driving tests/e2e/js/apigw_agent.mjs: the token travels in the URL."""

    def __init__(self, stack: OfflineStack) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed: install Node.js 20")
        self.relay = stack  # type: ignore[assignment]  # port and base are all it reads
        self.stack = stack
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
            wsPort=ws_port or self.stack.port,
            wsPath=self.stack.ws_path(token),
            base=self.stack.base,
            token=token,
        )
        found = self.expect(
            lambda o: o.get("client") == client and o.get("state") == "connected", timeout=60
        )
        socket_id: str = found["socket_id"]
        return socket_id
