"""The three servers, each started once per session and only when a test asks for it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from infra.offline import APP_ID, APP_KEY, APP_SECRET
from tests.conformance.servers import (
    ANONYMOUS_SOCKETS,
    RelayServer,
    Server,
    SoketiServer,
    apigateway_ws_url,
    relay_environment,
    soketi_environment,
)
from tests.e2e.harness import RelayProcess
from tests.e2e.offline import start_stack
from tests.e2e.soketi import SoketiProcess

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`relay serve` on the local provider."""
    folder = tmp_path_factory.mktemp("conformance-local")
    process = RelayProcess(relay_environment(folder), folder / "relay.log")
    ws_url = f"ws://127.0.0.1:{process.port}/app/{APP_KEY}?protocol=7"
    with RelayServer("local", base=process.base, ws_url=ws_url, settle_seconds=0.0) as server:
        yield server
    process.stop()


@pytest.fixture(scope="session")
def apigateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The WebSocket API's handlers under serverless-offline, over moto."""
    folder = tmp_path_factory.mktemp("conformance-apigateway")
    stack = start_stack(folder, extra_env={**relay_environment(folder), **ANONYMOUS_SOCKETS})
    # Each frame is a Lambda invocation: what it posts to other sockets may trail its reply.
    with RelayServer(
        "apigateway", base=stack.base, ws_url=apigateway_ws_url(stack.port), settle_seconds=0.3
    ) as server:
        yield server
    stack.stop()


@pytest.fixture(scope="session")
def soketi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """soketi with the relays' app id, key and secret and Pusher's limits."""
    folder = tmp_path_factory.mktemp("conformance-soketi")
    process = SoketiProcess(
        app_id=APP_ID,
        key=APP_KEY,
        secret=APP_SECRET,
        log_path=folder / "soketi.log",
        extra_env=soketi_environment(),
    )
    yield SoketiServer(process.port)
    process.stop()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Server:
    """The server named by the test's parameter (started on first use)."""
    found: Server = request.getfixturevalue(f"{request.param}_server")
    return found
