"""The Lambda bundle: pip installs a provider's dependencies for the Lambda runtime (python3.12,
manylinux x86_64 wheels) into .build/lambda/<provider>, which serverless.yml packages and the
functions put first on sys.path (RELAY_VENDOR_DIR). `make package` runs it, then
`serverless package`; infra/lambda_bundle.mjs stops packaging when the bundle is missing.

Each provider gets the relay's own runtime dependencies, Mangum, and only what its own code
imports: PyNaCl for the providers with encrypted channels (local, pusher, apigateway: imported on
the first encrypted publish); the ably, realtime and pusher SDKs are test oracles, never imported
by the providers; boto3 is in the Lambda runtime already. uvicorn serves
`relay serve` only. cryptography (5 of the 10 MB) verifies RS256/ES256 tokens from a JWKS
(RELAY_JWKS_URL) and nothing else: it is included with `--jwks` (HS256 needs none, and a function
configured with RELAY_JWKS_URL but built without it refuses to start, saying so).

Native libraries are stripped of their symbol tables, as serverless-python-requirements does by
default: PyNaCl's libsodium shrinks from 5.3 to 0.6 MB, cryptography's from 14.3 to 11.5 MB.

    python -m infra.lambda_build apigateway [--jwks] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".build" / "lambda"
PYTHON_VERSION = "3.12"
PLATFORM = "manylinux2014_x86_64"
PROVIDERS = ("local", "pusher", "ably", "supabase", "apigateway", "appsync")
# Base dependencies that only some providers' modules import.
ONLY_FOR = {"pynacl": frozenset({"local", "pusher", "apigateway"})}  # encrypted channels
# relay serve's server, its /docs assets and its /metrics.
SERVER_ONLY = ("uvicorn", "swagger-ui-bundle", "prometheus-client")
# Written last, so a bundle holds it only when complete; infra/lambda_bundle.mjs looks for it.
MARKER = ".requirements"


def _name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert found is not None, requirement
    return found.group(0).lower().replace("_", "-")


def _requirements(provider: str, *, jwks: bool) -> list[str]:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    wanted = [
        r
        for r in project["dependencies"]
        if _name(r) not in SERVER_ONLY and provider in ONLY_FOR.get(_name(r), {provider})
    ]
    if not jwks:
        wanted = [re.sub(r"^pyjwt\[crypto\]", "pyjwt", r, flags=re.IGNORECASE) for r in wanted]
    wanted += [r for r in extras["aws"] if _name(r) == "mangum"]
    return wanted


def build(provider: str, *, jwks: bool = False, force: bool = False) -> Path:
    """Install the provider's dependencies into .build/lambda/<provider> (kept while the
    requirements are unchanged); return the folder."""
    target = BUILD / provider
    wanted = _requirements(provider, jwks=jwks)
    stamp = "\n".join([PYTHON_VERSION, PLATFORM, "stripped", *wanted])
    stamp = hashlib.sha256(stamp.encode()).hexdigest()
    if not force and (target / MARKER).is_file() and (target / MARKER).read_text() == stamp:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    done = subprocess.run(  # noqa: S603 (this interpreter's pip; requirements from pyproject.toml)
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",  # bytecode of this interpreter would not serve python3.12
            "--target",
            str(target),
            "--platform",
            PLATFORM,
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            *wanted,
        ],
        capture_output=True,  # pip's notes about this machine's index settings: noise here
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install {provider}'s dependencies: {done.stderr}")
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: nothing runs them
    _strip(target)
    (target / MARKER).write_text(stamp)
    return target


def _strip(folder: Path) -> None:
    """Strip the symbol tables of the folder's native libraries."""
    tool = shutil.which("strip")
    if tool is None:
        raise RuntimeError(
            "strip (binutils) is needed to keep the package small: apt-get install binutils"
        )
    for library in sorted(folder.rglob("*.so")):
        subprocess.run([tool, "--strip-unneeded", str(library)], check=True, timeout=60)  # noqa: S603


def _main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m infra.lambda_build",
        description="Build .build/lambda/<provider>, the bundle serverless.yml packages.",
    )
    parser.add_argument("providers", nargs="*", help=f"{', '.join(PROVIDERS)} (default: all)")
    parser.add_argument("--jwks", action="store_true", help="add cryptography (RS256/ES256 tokens)")
    parser.add_argument("--force", action="store_true", help="rebuild even if unchanged")
    args = parser.parse_args()
    unknown = [p for p in args.providers if p not in PROVIDERS]
    if unknown:
        parser.error(f"unknown provider {unknown[0]!r}: choose from {', '.join(PROVIDERS)}")
    for provider in args.providers or PROVIDERS:
        started = time.monotonic()
        try:
            folder = build(provider, jwks=args.jwks, force=args.force)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            sys.exit(f"lambda_build: {provider}: {exc}")
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
        print(
            f"lambda_build: {folder.relative_to(ROOT)}: {size:.1f} MB "
            f"({time.monotonic() - started:.1f} s)"
        )


if __name__ == "__main__":
    _main()
