"""Fixtures that start real servers and clients."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.harness import PusherAgent, RelayProcess, agent

if TYPE_CHECKING:
    from collections.abc import Iterator

APP_ID = "4242"
APP_KEY = "e2e-key"
APP_SECRET = "e2e-app-secret-0123456789abcdef"
JWT_SECRET = "e2e-jwt-secret-0123456789abcdef0123456789"
API_KEY = "e2e-api-key-0123456789"

RELAY_ENV = {
    "RELAY_ENV": "test",
    "RELAY_APP_ID": APP_ID,
    "RELAY_APP_KEY": APP_KEY,
    "RELAY_APP_SECRET": APP_SECRET,
    "RELAY_JWT_SECRET": JWT_SECRET,
    "RELAY_API_KEYS": API_KEY,
    "RELAY_SSE_HEARTBEAT_SECONDS": "0.5",
    "RELAY_LOG_LEVEL": "INFO",
}

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """`relay serve` on the local provider with the default policy."""
    process = RelayProcess(RELAY_ENV, tmp_path_factory.mktemp("relay") / "relay.log")
    yield process
    process.stop()


@pytest.fixture(scope="session")
def chat_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """A relay whose policy file lets presence members send client events."""
    folder = tmp_path_factory.mktemp("chat")
    policy = Path(folder / "policy.toml")
    policy.write_text(
        '[[rule]]\npattern = "presence-chat-{room}"\nsubscribe = ["user"]\n'
        'publish = ["backend"]\nclient_events = ["user"]\npresence_info = ["name"]\n\n'
        '[[rule]]\npattern = "private-quiet-{room}"\nsubscribe = ["user"]\n'
        'publish = ["backend"]\n'
    )
    process = RelayProcess({**RELAY_ENV, "RELAY_POLICY_FILE": str(policy)}, folder / "relay.log")
    yield process
    process.stop()


@pytest.fixture
def clients(relay: RelayProcess) -> Iterator[PusherAgent]:
    """pusher-js clients against the default relay."""
    with agent(relay, APP_KEY) as a:
        yield a


@pytest.fixture
def chat_clients(chat_relay: RelayProcess) -> Iterator[PusherAgent]:
    """pusher-js clients against the chat relay."""
    with agent(chat_relay, APP_KEY) as a:
        yield a
