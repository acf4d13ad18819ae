"""GET /health: liveness, the provider, the version, and the provider's circuit as this process
sees it (an operator reads at a glance that publishes fail fast because the breaker is open)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from app import __version__
from core.errors import ProviderUnavailable

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI


async def _fail() -> None:
    raise ProviderUnavailable("down")


async def test_health_names_the_provider_version_and_a_closed_circuit(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "provider": "local",
        "version": __version__,
        "circuit": "closed",
    }


async def test_health_says_when_the_circuit_is_open(
    relay_app: FastAPI, http: httpx.AsyncClient
) -> None:
    breaker = relay_app.state.relay.breaker
    for _ in range(breaker.failures):
        with pytest.raises(ProviderUnavailable):
            await breaker.call(_fail)
    answer = await http.get("/health")
    assert answer.status_code == 200  # liveness: the relay itself is up
    assert answer.json()["circuit"] == "open"
