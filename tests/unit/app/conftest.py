"""Fixtures of the shell's tests."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo what the CLI's main() does to the root logger (it points it at the captured stderr
    of the moment)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
