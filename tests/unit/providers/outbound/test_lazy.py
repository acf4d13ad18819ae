"""Lazy: built once on first use, closed only when built, refused after closing."""

from __future__ import annotations

import pytest

from core.errors import ProviderUnavailable
from providers.outbound.lazy import Lazy


class Client:
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


class Factory:
    def __init__(self) -> None:
        self.made: list[Client] = []

    def __call__(self) -> Client:
        self.made.append(Client())
        return self.made[-1]


async def test_nothing_is_built_before_the_first_use() -> None:
    factory = Factory()
    lazy = Lazy(factory)
    assert factory.made == []
    await lazy.aclose()  # closing an unbuilt client builds nothing
    assert factory.made == []


async def test_built_once_and_reused() -> None:
    factory = Factory()
    lazy = Lazy(factory)
    first = lazy.get()
    assert lazy.get() is first
    assert factory.made == [first]


async def test_a_ready_client_is_used_as_is() -> None:
    factory = Factory()
    ready = Client()
    lazy = Lazy(factory, ready=ready)
    assert lazy.get() is ready
    await lazy.aclose()
    assert ready.closed == 1
    assert factory.made == []


@pytest.mark.parametrize("used", [False, True])
async def test_after_aclose_uses_are_refused(used: bool) -> None:
    factory = Factory()
    lazy = Lazy(factory)
    if used:
        lazy.get()
    await lazy.aclose()
    with pytest.raises(ProviderUnavailable, match="shutting down"):
        lazy.get()
    assert len(factory.made) == int(used)
    assert [c.closed for c in factory.made] == [1] * int(used)
