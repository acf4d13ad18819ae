"""Real processes for end-to-end tests: `relay serve`, and pusher-js in Node."""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "tests" / "e2e" / "js" / "agent.mjs"
Observation = dict[str, Any]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RelayProcess:
    """`relay serve` in a subprocess, with its log kept for assertions."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "RELAY_HOST": "127.0.0.1", "RELAY_PORT": str(self.port)}
        self.log_path = log_path
        relay = Path(sys.executable).with_name("relay")
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [str(relay), "serve", *args], env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"relay did not start: {self.log_path.read_text()}")

    def log(self) -> str:
        """Everything the relay printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the relay and wait for it."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class PusherAgent:
    """pusher-js clients in one Node process, driven by JSON lines."""

    def __init__(self, relay: RelayProcess, app_key: str, *, script: Path = AGENT) -> None:
        """`script`: agent.mjs, or a script that extends it (user_agent.mjs: user events)."""
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed: install Node.js 20")
        self.relay = relay
        self.app_key = app_key
        self.process = subprocess.Popen(
            [node, str(script)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.seen: list[Observation] = []
        self._inbox: queue.Queue[Observation] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect(lambda o: o["type"] == "ready")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._inbox.put(json.loads(line))

    def send(self, **command: Any) -> None:
        """Send one command."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def expect(self, match: Callable[[Observation], bool], timeout: float = 10) -> Observation:
        """The first observation (seen or coming) that matches, or fail after `timeout`."""
        for obs in self.seen:
            if match(obs):
                self.seen.remove(obs)
                return obs
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                obs = self._inbox.get(timeout=left)
            except queue.Empty:
                break
            if obs["type"] == "agent_error":
                raise AssertionError(f"agent error: {obs['error']}")
            if match(obs):
                return obs
            self.seen.append(obs)
        raise AssertionError(f"nothing matched within {timeout}s; seen: {self.seen[-20:]}")

    def never(self, match: Callable[[Observation], bool], wait: float = 1.0) -> None:
        """Fail if a matching observation arrives within `wait` seconds."""
        try:
            obs = self.expect(match, timeout=wait)
        except AssertionError:
            return
        raise AssertionError(f"unexpected observation: {obs}")

    def connect(self, client: str, token: str | None = None, *, ws_port: int | None = None) -> str:
        """Connect a pusher-js client (to `ws_port`, default the relay); return its socket id."""
        self.send(
            op="connect",
            client=client,
            key=self.app_key,
            host="127.0.0.1",
            port=self.relay.port,
            wsPort=ws_port or self.relay.port,
            base=self.relay.base,
            token=token,
        )
        obs = self.expect(lambda o: o.get("client") == client and o.get("state") == "connected")
        socket_id: str = obs["socket_id"]
        return socket_id

    def subscribe(self, client: str, channel: str) -> Observation:
        """Subscribe and wait for success (returns the observation, members included)."""
        self.send(op="subscribe", client=client, channel=channel)
        return self.expect(
            lambda o: (
                o.get("client") == client
                and o.get("channel") == channel
                and o["type"] in ("subscribed", "subscription_error")
            )
        )

    def close(self) -> None:
        """Stop the Node process."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


@contextmanager
def agent(relay: RelayProcess, app_key: str) -> Iterator[PusherAgent]:
    """A PusherAgent that is stopped afterwards."""
    a = PusherAgent(relay, app_key)
    try:
        yield a
    finally:
        a.close()
