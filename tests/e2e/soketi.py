"""soketi, a Pusher-protocol server, in a subprocess: end-to-end tests of the pusher provider."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

import httpx

from tests.e2e.conftest import RELAY_ENV
from tests.e2e.harness import ROOT, free_port

if TYPE_CHECKING:
    from pathlib import Path

SOKETI = ROOT / "node_modules" / ".bin" / "soketi"
WEBHOOK_KINDS = (
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
)


def pusher_relay_env(
    port: int, *, app_id: str, key: str, secret: str, **extra: str
) -> dict[str, str]:
    """The e2e relay's settings on the pusher provider, sending to a Pusher-protocol server on
    127.0.0.1:`port` (soketi, or a proxy in front of it); RELAY_APP_* left out, as the pusher
    provider signs with PUSHER_*."""
    env = {k: v for k, v in RELAY_ENV.items() if not k.startswith("RELAY_APP_")}
    env.update(
        RELAY_PROVIDER="pusher",
        PUSHER_APP_ID=app_id,
        PUSHER_KEY=key,
        PUSHER_SECRET=secret,
        PUSHER_HOST="127.0.0.1",
        PUSHER_PORT=str(port),
        PUSHER_USE_TLS="false",
        **extra,
    )
    return env


class SoketiProcess:
    """`soketi start` on free ports with one app; `stop()` really stops it, `start()` again."""

    def __init__(
        self,
        *,
        app_id: str,
        key: str,
        secret: str,
        log_path: Path,
        port: int | None = None,
        webhook_url: str | None = None,
        webhook_batching_ms: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        if not app_id.isdigit():
            raise ValueError("Pusher app ids are digits (the official SDK insists)")
        self.app_id = app_id
        self.key = key
        self.secret = secret
        self.port = port or free_port()  # chosen first when the relay must know it
        self.metrics_port = free_port()
        self.log_path = log_path
        self.env: dict[str, str] = {
            **os.environ,
            "SOKETI_HOST": "127.0.0.1",
            "SOKETI_PORT": str(self.port),
            "SOKETI_METRICS_SERVER_PORT": str(self.metrics_port),
            "SOKETI_DEFAULT_APP_ID": app_id,
            "SOKETI_DEFAULT_APP_KEY": key,
            "SOKETI_DEFAULT_APP_SECRET": secret,
            "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
            # pusher:signin works only when user authentication is on; a socket that neither
            # signs in nor joins a private channel is closed after the timeout, so make it long.
            "SOKETI_DEFAULT_APP_USER_AUTHENTICATION": "true",
            "SOKETI_USER_AUTHENTICATION_TIMEOUT": "600000",
            "SOKETI_SHUTDOWN_GRACE_PERIOD": "0",
        }
        if webhook_url is not None:
            hooks: list[dict[str, Any]] = [{"url": webhook_url, "event_types": list(WEBHOOK_KINDS)}]
            self.env["SOKETI_DEFAULT_APP_WEBHOOKS"] = json.dumps(hooks)
        if webhook_batching_ms is not None:
            self.env["SOKETI_WEBHOOKS_BATCHING"] = "true"
            self.env["SOKETI_WEBHOOKS_BATCHING_DURATION"] = str(webhook_batching_ms)
        self.env.update(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.start()

    @property
    def base(self) -> str:
        """The HTTP API's origin."""
        return f"http://127.0.0.1:{self.port}"

    def relay_env(self) -> dict[str, str]:
        """The variables that point the relay's pusher provider at this server."""
        return {
            "RELAY_PROVIDER": "pusher",
            "PUSHER_APP_ID": self.app_id,
            "PUSHER_KEY": self.key,
            "PUSHER_SECRET": self.secret,
            "PUSHER_HOST": "127.0.0.1",
            "PUSHER_PORT": str(self.port),
            "PUSHER_USE_TLS": "false",
        }

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 20) -> None:
        """Start (or restart, on the same ports) and wait until /ready answers OK."""
        if self.running:
            return
        self._log = self.log_path.open("ab")
        # Its own process group, so that stop() reaches anything soketi itself started.
        self.process = subprocess.Popen(
            [str(SOKETI), "start"],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"soketi exited: {self.log()}")
            try:
                response = httpx.get(self.base + "/ready", timeout=1)
                if response.status_code == 200 and response.text.strip() == "OK":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"soketi did not become ready: {self.log()}")

    def log(self) -> str:
        """Everything soketi printed so far (across restarts)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop soketi and wait until its port refuses connections."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                self._signal(process, signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    self._signal(process, signal.SIGKILL)
                    process.wait()
            else:
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.process = None

    def pause(self) -> None:
        """Freeze soketi (SIGSTOP): connections are accepted by the kernel but never answered."""
        assert self.process is not None
        assert self.process.poll() is None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused soketi run again (SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
