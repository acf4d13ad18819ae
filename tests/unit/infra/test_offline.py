"""`make offline` (infra/offline.py) without starting it: what it prints is what the deployment
doc shows, and a port in use is refused before anything starts. The stack itself runs in
tests/e2e/test_apigateway_offline.py, which also runs the printed commands."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from infra import offline, offline_endpoints

if TYPE_CHECKING:
    import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_the_doc_shows_what_make_offline_prints() -> None:
    doc = (ROOT / "docs" / "deploy-lambda.md").read_text()
    section = doc.split("## Running it locally", 1)[1].split("\n## ", 1)[0]
    printed = re.search(r"Then it prints.*?\n```\n(.*?)```", section, re.DOTALL)
    assert printed, section
    expected = [f"  {line}" for line in offline_endpoints.DEFAULT_ENDPOINTS.describe()]
    assert printed.group(1).splitlines() == expected
    assert "```sh\nmake offline\n```" in section


def test_make_offline_runs_the_module() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\noffline: ", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/python -m infra.offline $(OFFLINE_ARGS)" in recipe


def test_ws_path_carries_the_token_in_the_query() -> None:
    endpoints = offline_endpoints.Endpoints(4000, 4001, 4002, 4003)
    assert endpoints.ws_path("a.b.c") == "/offline?token=a.b.c&path="
    assert endpoints.ws_path(None) == "/offline"
    assert endpoints.base == "http://127.0.0.1:4000"
    assert endpoints.ws_url == "ws://127.0.0.1:4001/offline"


def test_a_port_in_use_is_named_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert offline.main(["--http-port", str(port)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"offline: in use: {port} (http); choose others")
