"""The README's walk-through: `relay serve`'s banner, `relay token`, `examples/listen.mjs`,
`relay publish`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import APP_KEY
from tests.e2e.harness import ROOT, RelayProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

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


def _listen(
    relay: RelayProcess, channel: str, token: str | None = None, *, app_key: str = APP_KEY
) -> subprocess.Popen[str]:
    env = {**os.environ, "RELAY_URL": relay.base, "RELAY_APP_KEY": app_key}
    if token:
        env["RELAY_TOKEN"] = token
    return subprocess.Popen(
        ["node", str(ROOT / "examples" / "listen.mjs"), channel],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
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
        _stop(listener)


def _stop(listener: subprocess.Popen[str]) -> None:
    listener.kill()
    listener.communicate()


def test_example_listener_is_refused_another_users_channel(relay: RelayProcess) -> None:
    token = _relay(relay, "token", "--user", "7")
    listener = _listen(relay, "private-user-42", token)
    try:
        assert _read_until(listener, "refused:") == "refused: private-user-42 (403)"
    finally:
        _stop(listener)


def test_example_listener_with_a_wrong_app_key_says_so_and_fails(relay: RelayProcess) -> None:
    listener = _listen(relay, "news", app_key="not-the-key")
    try:
        out, err = listener.communicate(timeout=20)
    finally:
        _stop(listener)
    assert listener.returncode == 1
    assert out == ""
    assert err.startswith("connection refused: 4001 ")
    assert "RELAY_APP_KEY" in err


@pytest.fixture(scope="module")
def dev_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """`relay serve` as `make run` starts it: development defaults, nothing configured."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RELAY_")}
    process = RelayProcess(env, tmp_path_factory.mktemp("dev") / "relay.log")
    yield process
    process.stop()


def test_serve_warns_once_naming_the_development_defaults(dev_relay: RelayProcess) -> None:
    warnings = [line for line in dev_relay.log().splitlines() if "development defaults" in line]
    assert len(warnings) == 1, warnings
    for name in ("RELAY_APP_ID", "RELAY_APP_KEY", "RELAY_APP_SECRET", "RELAY_JWT_SECRET"):
        assert name in warnings[0]


def test_the_banner_settings_connect_pusher_js(dev_relay: RelayProcess) -> None:
    found = re.search(r"^relay: pusher-js: (new Pusher\(.*\))$", dev_relay.log(), re.MULTILINE)
    assert found, dev_relay.log()
    script = (
        f"import Pusher from 'pusher-js';\nconst pusher = {found.group(1)};\n"
        "pusher.connection.bind('connected', () => {\n"
        "  console.log('connected');\n"
        "  process.exit(0);\n"
        "});\n"
        "pusher.connection.bind('error', (e) => { console.log(JSON.stringify(e)); });\n"
        "setTimeout(() => process.exit(1), 10000);\n"
    )
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "connected\n"), done.stderr
