"""One Pusher protocol 7 conformance suite: every exchange against every server that has the
features it needs (tests/conformance/README.md)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.conformance.exchanges import EXCHANGES
from tests.conformance.script import Run
from tests.conformance.servers import FEATURES

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

    from tests.conformance.script import Exchange
    from tests.conformance.servers import Server

pytestmark = pytest.mark.e2e


def slug(name: str) -> str:
    """A test id from an exchange's name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _cases() -> list[ParameterSet]:
    # Grouped by server; a server without a feature an exchange needs has nothing to compare.
    return [
        pytest.param(server, exchange, id=f"{server}-{slug(exchange.name)}")
        for server, features in FEATURES.items()
        for exchange in EXCHANGES
        if exchange.needs <= features
    ]


@pytest.mark.parametrize(("server", "exchange"), _cases(), indirect=["server"])
def test_exchange(server: Server, exchange: Exchange) -> None:
    """The server answers the script, or its documented deviation, frame for frame."""
    deviation = exchange.deviations.get(server.name)
    with Run(server) as run:
        run.play(exchange.steps if deviation is None else deviation.steps)


def test_exchanges_are_well_formed() -> None:
    """Names are unique; deviations name a server the exchange runs on, with a reason."""
    assert len({slug(e.name) for e in EXCHANGES}) == len(EXCHANGES)
    for exchange in EXCHANGES:
        for server, deviation in exchange.deviations.items():
            assert server in FEATURES, (exchange.name, server)
            assert exchange.needs <= FEATURES[server], (exchange.name, server, "never runs")
            assert deviation.reason, exchange.name
            assert deviation.steps != exchange.steps, exchange.name
