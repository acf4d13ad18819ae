"""The fresh-interpreter probe every import test shares: what a cold start loads is only visible
in a process that has imported nothing yet.

`fresh(program, env)` runs `program` with `python -W error -c` from the repository root, in an
environment cleared of the relay's and every provider's variables (and of `PYTHON*`, which would
change how modules load), plus `env`; the program prints one JSON document as its last line,
which is returned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

ROOT = Path(__file__).resolve().parents[1]
CLEARED = ("RELAY_", "PUSHER_", "ABLY_", "SUPABASE_", "APIGW_", "APIGATEWAY_", "PYTHON")


def fresh(program: str, env: Mapping[str, str] | None = None) -> Any:
    """The JSON the program printed last, run in a fresh interpreter; its errors fail the test."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(CLEARED)}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**clean, **(env or {})},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
