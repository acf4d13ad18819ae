"""scripts/progress.py, which `make run` and `make test` run pip and npm through: a long first
set-up shows the time so far and the command's latest line instead of a minute of silence."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROGRESS = ROOT / "scripts" / "progress.py"
SLOW = (
    "for i in 1 2 3 4 5 6; do echo \"Collecting pkg$i\"; echo '  a continuation'; sleep 0.3; done"
)


def _run(script: str, *, tick: str = "0.2") -> tuple[list[tuple[float, str]], int]:
    """(seconds since start, line) of what progress.py printed, and its exit status."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(PROGRESS), "installing", "--", "bash", "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PROGRESS_TICK_SECONDS": tick},
    )
    assert process.stdout is not None
    with process.stdout:
        seen = [(time.monotonic() - started, line.rstrip("\n")) for line in process.stdout]
    return seen, process.wait()


def test_a_slow_command_shows_progress_while_it_runs() -> None:
    seen, code = _run(SLOW)
    assert code == 0
    assert seen[0][1] == "make: installing ..."
    assert seen[-1][1].startswith("make: installing: done in ")
    statuses = [(at, line) for at, line in seen[1:-1]]
    assert statuses, seen
    # Printed while the command still ran (it takes 1.8 s), naming its latest top-level line.
    assert statuses[0][0] < seen[-1][0] - 0.5
    assert all(line.startswith("make: installing: ") for _, line in statuses)
    assert any("Collecting pkg" in line for _, line in statuses)
    assert not any("continuation" in line for _, line in seen)


def test_a_failure_shows_the_output_and_keeps_the_status() -> None:
    seen, code = _run("echo 'ERROR: no matching distribution'; exit 3")
    assert code == 3
    lines = [line for _, line in seen]
    assert "ERROR: no matching distribution" in lines
    assert lines[-1] == "make: installing: failed after 0 s (exit status 3)"


def test_make_runs_pip_and_npm_with_progress() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "PROGRESS := $(PYTHON) scripts/progress.py" in makefile
    step = r'\t@\$\(PROGRESS\) "[^"]+" -- \\\n\t\t'
    assert re.search(
        step + re.escape("$(BIN)/python -m pip install --progress-bar off -e"), makefile
    )
    assert re.search(step + re.escape("npm ci --no-audit --no-fund --loglevel=http"), makefile)
    assert "--quiet -e" not in makefile
