"""Choosing a backplane: memory by default (today's single hub, no Redis), redis with
RELAY_REDIS_URL, and the configuration error that names what is missing, with the others."""

from __future__ import annotations

import os

import pytest

from core.errors import ConfigurationError
from core.settings import Settings, load_settings
from providers.local.backplane import MemoryBackplane, build_backplane
from providers.local.hub import Delivery, Hub
from providers.local.hubport import HubPort
from providers.pusherproto.state import SessionState
from tests.unit.conftest import UNIT_SETTINGS, Recorder


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("RELAY_"):
            monkeypatch.delenv(name)


async def test_memory_is_the_default_and_the_hub_is_the_whole_truth() -> None:
    hub = Hub()
    closed: list[str] = []
    backplane = build_backplane(Settings(**UNIT_SETTINGS), hub, close_user=closed.append)
    assert isinstance(backplane, MemoryBackplane)
    sub = Recorder("1.1")
    port = backplane.port(sub, SessionState("1.1"))
    assert isinstance(port, HubPort)
    await port.join("news", None)
    backplane.send(Delivery("a", "news", "1"))
    await backplane.publish([Delivery("b", "news", "2")])
    assert sub.events == [("news", "a", "1"), ("news", "b", "2")]
    assert await backplane.counts("news") == (1, 0)
    assert await backplane.channel_names() == ["news"]
    await backplane.terminate("alice")
    assert closed == ["alice"]


def test_redis_without_a_url_is_refused_with_every_other_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAY_BACKPLANE", "redis")
    monkeypatch.setenv("RELAY_PORT", "0")  # a second problem, reported at once
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    problems = caught.value.problems
    assert "RELAY_REDIS_URL: required when RELAY_BACKPLANE=redis" in problems
    assert any(p.startswith("RELAY_PORT") for p in problems)


def test_an_unknown_backplane_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_BACKPLANE", "kafka")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert any(p.startswith("RELAY_BACKPLANE") for p in caught.value.problems)


def test_redis_with_a_url_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_BACKPLANE", "redis")
    monkeypatch.setenv("RELAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert load_settings().backplane == "redis"
