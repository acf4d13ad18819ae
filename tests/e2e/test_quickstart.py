"""The README's walk-through: `relay token`, `examples/listen.mjs`, `relay publish`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import APP_KEY
from tests.e2e.harness import ROOT

if TYPE_CHECKING:
    from tests.e2e.harness import RelayProcess

pytestmark = pytest.mark.e2e
RELAY_BIN = str(Path(sys.executable).with_name("relay"))


def _relay(relay: RelayProcess, *args: str) -> str:
    done = subprocess.run(
        [RELAY_BIN, *args],
        env={**os.environ, **relay.env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _listen(relay: RelayProcess, channel: str, token: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "RELAY_URL": relay.base, "RELAY_APP_KEY": APP_KEY}
    if token:
        env["RELAY_TOKEN"] = token
    return subprocess.Popen(
        ["node", str(ROOT / "examples" / "listen.mjs"), channel],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _read_until(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"listener ended before printing {prefix!r}")


@pytest.mark.parametrize("private", [False, True], ids=["public", "private-user"])
def test_event_sent_with_relay_publish_arrives_in_the_example_listener(
    relay: RelayProcess, private: bool
) -> None:
    channel = "private-user-42" if private else "quickstart"
    token = _relay(relay, "token", "--user", "42", "--name", "Ann") if private else None
    listener = _listen(relay, channel, token)
    try:
        assert _read_until(listener, "subscribed:") == f"subscribed: {channel}"
        published = json.loads(_relay(relay, "publish", channel, "hello", '{"text": "hi"}'))
        assert published["accepted"] == 1
        got = json.loads(_read_until(listener, "{"))
        assert got == {"channel": channel, "event": "hello", "data": {"text": "hi"}}
    finally:
        listener.kill()
        listener.wait()
        assert listener.stdout is not None
        listener.stdout.close()


def test_example_listener_is_refused_another_users_channel(relay: RelayProcess) -> None:
    token = _relay(relay, "token", "--user", "7")
    listener = _listen(relay, "private-user-42", token)
    try:
        assert _read_until(listener, "refused:") == "refused: private-user-42 (403)"
    finally:
        listener.kill()
        listener.wait()
        assert listener.stdout is not None
        listener.stdout.close()
