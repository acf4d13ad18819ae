"""A path cannot forge a line in the access log.

The access log prints the request path, which the server has percent-decoded: `%0a` in a URL
became a line break, and the rest of the path a log line of the client's writing. Control
characters, and the backslash that could fake their escapes, are now escaped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from app.middleware import loggable

if TYPE_CHECKING:
    from tests.security.conftest import Target

FORGED = "INFO app.access GET /v1/admin 200"


@pytest.mark.parametrize("encoded", ["%0a", "%0d", "%0d%0a", "%1b[2J", "%7f"])
async def test_a_control_character_in_the_path_stays_on_one_line(
    local_target: Target, caplog: pytest.LogCaptureFixture, encoded: str
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    await local_target.http.get(f"/v1/channels/news{encoded}{FORGED.replace(' ', '%20')}")
    lines = [r.getMessage() for r in caplog.records if r.name == "app.access"]
    assert len(lines) == 1, lines
    assert lines[0].isprintable(), lines[0]
    assert "\\" in lines[0]


def test_a_backslash_cannot_fake_an_escape() -> None:
    # `\n` typed by the client and a line break escaped must not print alike.
    assert loggable("/a\\nb") != loggable("/a\nb")
    assert loggable("/v1/channels/news") == "/v1/channels/news"
    assert loggable("/v1/caf\u00e9") == "/v1/caf\u00e9"
