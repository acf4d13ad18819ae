"""`make package` as the tests and benchmarks run it: offline (dummy AWS credentials, a fixed
region), into a folder of their own rather than the checkout's .serverless, and with this
interpreter, never re-installing the environments the tests run in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import ROOT

SERVERLESS = ROOT / "node_modules" / ".bin" / "serverless"
# The variables `make package` reads, and make's own: none leaks in from the caller.
MAKE_VARIABLES = ("PROVIDER", "STAGE", "REGION", "JWKS", "PACKAGE_DIR", "BIN")
OFFLINE_ENV = {
    "AWS_ACCESS_KEY_ID": "package-dummy",
    "AWS_SECRET_ACCESS_KEY": "package-dummy",
    "AWS_REGION": "us-east-1",
    "SLS_TELEMETRY_DISABLED": "1",
    "SLS_NOTIFICATIONS_MODE": "off",
}


def offline_env() -> dict[str, str]:
    """This environment without AWS credentials or make's variables, plus dummy credentials."""
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "MAKE", "MFLAGS")) and k not in MAKE_VARIABLES
        },
        **OFFLINE_ENV,
    }


def make_package(
    folder: Path, *, provider: str | None = None, stage: str = "ci", jwks: bool = False
) -> Path:
    """`make package` (provider None: make's default) into folder; return the zip. The log is
    folder.log."""
    tool = shutil.which("make")
    if tool is None:
        raise RuntimeError("make is not installed")
    variables = [
        f"BIN={Path(sys.executable).parent}",
        f"PACKAGE_DIR={folder}",
        f"STAGE={stage}",
        "REGION=us-east-1",
    ]
    if provider is not None:
        variables.append(f"PROVIDER={provider}")
    if jwks:
        variables.append("JWKS=1")
    log = folder.with_suffix(".log")
    # -o: the virtualenv and node_modules count as installed, whatever their stamps say.
    installed = ["-o", ".venv/.installed", "-o", "node_modules/.installed"]
    with log.open("wb") as sink:
        done = subprocess.run(
            [tool, *installed, "package", *variables],
            cwd=ROOT,
            env=offline_env(),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"make package failed: {log.read_text(errors='replace')}")
    return folder / "realtime-relay.zip"
