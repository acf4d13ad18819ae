"""The registry: a missing SDK asks for the provider's extra; a missing relay module says the
installation itself is incomplete (a deployment package that left a file out)."""

from __future__ import annotations

import importlib

import pytest

from core.errors import ConfigurationError
from providers import registry


def _missing(name: str) -> object:
    def fail(module: str) -> object:
        raise ImportError(f"No module named {name!r}", name=name)

    return fail


@pytest.mark.parametrize(
    ("missing", "says"),
    [
        ("pusher", "needs its extra: pip install 'realtime-relay[pusher]' (missing pusher)"),
        ("nacl.secret", "needs its extra"),
        ("providers.outbound.lazy", "the relay's module providers.outbound.lazy is missing"),
        ("core.settings", "the relay's module core.settings is missing"),
    ],
)
def test_an_import_failure_names_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, missing: str, says: str
) -> None:
    monkeypatch.setattr(importlib, "import_module", _missing(missing))
    with pytest.raises(ConfigurationError) as caught:
        registry.provider_class("pusher")
    assert says in str(caught.value)


def test_an_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        registry.provider_class("nope")
    assert "have: ably, apigateway, appsync, local, pusher, supabase" in str(caught.value)
