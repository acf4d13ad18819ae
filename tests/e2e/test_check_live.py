"""`relay check --live` against real servers: soketi stands in for Pusher, so a wrong secret is
refused by a server that really checks the signature."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core.errors import ProviderError
from core.provider import Message
from providers.pusher.provider import PusherProvider
from providers.pusher.settings import PusherSettings
from tests.e2e.soketi import SoketiProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e
RELAY_BIN = str(Path(sys.executable).with_name("relay"))
APP_ID = "4343"
KEY = "check-live-key"
SECRET = "check-live-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def soketi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoketiProcess]:
    log = tmp_path_factory.mktemp("check-live") / "soketi.log"
    process = SoketiProcess(app_id=APP_ID, key=KEY, secret=SECRET, log_path=log)
    yield process
    process.stop()


def _check_live(soketi: SoketiProcess, **pusher: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("RELAY_", "PUSHER_"))}
    env.update(soketi.relay_env(), PUSHER_MAX_ATTEMPTS="1", **pusher)
    return subprocess.run(
        [RELAY_BIN, "check", "--live"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_right_credentials_work(soketi: SoketiProcess) -> None:
    done = _check_live(soketi)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"relay: live check ok: {soketi.base} accepted app {APP_ID}'s key and secret "
        "(GET /channels: 0 occupied)"
    )
    assert "HTTP Request" not in done.stderr  # no httpx request lines


@pytest.mark.parametrize(
    "wrong",
    [
        {"PUSHER_SECRET": "not-the-secret-0123456789abcdef"},
        {"PUSHER_APP_ID": "999"},
    ],
    ids=["secret", "app-id"],  # soketi, unlike Pusher, does not check auth_key against the app
)
def test_wrong_credentials_fail_saying_why(soketi: SoketiProcess, wrong: dict[str, str]) -> None:
    done = _check_live(soketi, **wrong)
    assert done.returncode == 1
    assert done.stdout.startswith("relay: configuration ok; provider 'pusher'")
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("relay: live check failed: ")]
    assert line.startswith("relay: live check failed: pusher refused the call (")
    assert SECRET not in done.stderr
    assert "not-the-secret" not in done.stderr


def test_an_unreachable_server_fails(soketi: SoketiProcess) -> None:
    done = _check_live(soketi, PUSHER_PORT="1", PUSHER_TIMEOUT_SECONDS="2")
    assert done.returncode == 1
    assert "relay: live check failed: " in done.stderr


@pytest.mark.parametrize("many", [False, True], ids=["batch-call", "events-call"])
async def test_a_publish_soketi_refuses_with_200_is_not_reported_delivered(
    soketi: SoketiProcess, many: bool
) -> None:
    # soketi answers a bad signature with 200 and {"error", "code"}: the publish reached no one,
    # so the caller must get a refusal (502, accepted: false), never a receipt.
    env = soketi.relay_env()
    settings = PusherSettings(
        app_id=env["PUSHER_APP_ID"],
        key=env["PUSHER_KEY"],
        secret="not-the-secret-0123456789abcdef",
        host="127.0.0.1",
        port=soketi.port,
        use_tls=False,
        max_attempts=1,
    )
    provider = PusherProvider(settings)
    channels = ["a", "b"] if many else ["a"]
    try:
        with pytest.raises(ProviderError) as refused:
            await provider.publish([Message(c, "e", "{}") for c in channels])
    finally:
        await provider.aclose()
    assert refused.value.status == 502
    assert refused.value.extra["accepted"] is False
    assert refused.value.extra["provider_status"] == 401
