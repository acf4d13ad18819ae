"""The Lambda package's dependencies: pip installs them for the Lambda runtime (python3.12,
manylinux x86_64 wheels) into .build/lambda/<provider>, which serverless.yml packages and the
functions put first on sys.path (RELAY_VENDOR_DIR).

Each provider gets the relay's own runtime dependencies, Mangum, and only what its own code
imports: PyNaCl for pusher (encrypted channels); the ably, realtime and pusher SDKs are test
oracles, never imported by the providers; boto3 is in the Lambda runtime already. uvicorn serves
`relay serve` only. cryptography (5 of the 10 MB) verifies RS256/ES256 tokens from a JWKS
(RELAY_JWKS_URL) and nothing else: it is included with `--jwks` (HS256 needs none, and a function
configured with RELAY_JWKS_URL but built without it refuses to start, saying so).

Native libraries are stripped of their symbol tables, as serverless-python-requirements does by
default: PyNaCl's libsodium shrinks from 5.3 to 0.6 MB, cryptography's from 14.3 to 11.5 MB.
docs/deploy-lambda.md gives the same commands.

    python -m tests.e2e.lambda_build apigateway [--jwks] [--force]
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".build" / "lambda"
PYTHON_VERSION = "3.12"
PLATFORM = "manylinux2014_x86_64"
PROVIDERS = ("local", "pusher", "ably", "supabase", "apigateway")
# Distributions a provider's own modules import, from its extra in pyproject.toml.
PROVIDER_RUNTIME = {"pusher": ("pynacl",)}
SERVER_ONLY = ("uvicorn",)
STAMP = ".requirements"


def _name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert found is not None, requirement
    return found.group(0).lower().replace("_", "-")


def requirements(provider: str, *, jwks: bool = False) -> list[str]:
    """The requirement strings of one provider's Lambda package."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    wanted = [r for r in project["dependencies"] if _name(r) not in SERVER_ONLY]
    if not jwks:
        wanted = [re.sub(r"^pyjwt\[crypto\]", "pyjwt", r, flags=re.IGNORECASE) for r in wanted]
    wanted += [r for r in extras["aws"] if _name(r) == "mangum"]
    for name in PROVIDER_RUNTIME.get(provider, ()):
        wanted += [r for r in extras[provider] if _name(r) == name]
    return wanted


def build(provider: str, *, jwks: bool = False, force: bool = False) -> Path:
    """Install the provider's dependencies into .build/lambda/<provider> (kept while the
    requirements are unchanged); return the folder."""
    target = BUILD / provider
    wanted = requirements(provider, jwks=jwks)
    stamp = "\n".join([PYTHON_VERSION, PLATFORM, "stripped", *wanted])
    stamp = hashlib.sha256(stamp.encode()).hexdigest()
    if not force and (target / STAMP).is_file() and (target / STAMP).read_text() == stamp:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    done = subprocess.run(
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
    strip(target)
    (target / STAMP).write_text(stamp)
    return target


def strip(folder: Path) -> int:
    """Strip the symbol tables of the folder's native libraries; return how many were."""
    tool = shutil.which("strip")
    if tool is None:
        raise RuntimeError(
            "strip (binutils) is needed to keep the package small: apt-get install binutils"
        )
    libraries = sorted(folder.rglob("*.so"))
    for library in libraries:
        subprocess.run([tool, "--strip-unneeded", str(library)], check=True, timeout=60)
    return len(libraries)


def package(provider: str, output: Path, *, stage: str = "ci") -> Path:
    """`serverless package` (v3) for one provider, offline: dummy credentials, a fixed region,
    nothing resolved from AWS. Return the artifact (output also holds the templates)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: install Node.js 20")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": "package-dummy",
        "AWS_SECRET_ACCESS_KEY": "package-dummy",
        "AWS_REGION": "us-east-1",
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
    }
    log = output.with_suffix(".log")
    with log.open("wb") as sink:
        done = subprocess.run(
            [
                node,
                str(ROOT / "node_modules" / ".bin" / "serverless"),
                "package",
                "--stage",
                stage,
                "--region",
                "us-east-1",
                "--param",
                f"provider={provider}",
                "--package",
                str(output),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"serverless package failed: {log.read_text(errors='replace')}")
    return output / "realtime-relay.zip"


if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if not a.startswith("--")]
    for name in names or PROVIDERS:
        print(build(name, jwks="--jwks" in sys.argv, force="--force" in sys.argv))
