"""The Lambda package's zipped size per provider, as `make package` builds it.

Each package holds the relay's code, that provider's module, and the dependencies pip installs
for python3.12 (infra/lambda_build.py: no boto3, which the runtime has, no uvicorn, no SDK
the provider does not import; native libraries stripped). The target is 10 MiB (10,485,760
bytes). `--jwks` packages (cryptography, for RS256/ES256 tokens from a JWKS) are reported without
a target.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.figures import Figure
from infra.lambda_build import PROVIDERS, build
from tests.e2e.packaging import make_package

TARGET_MIB = 10.0
MIB = 1024 * 1024


def _size(provider: str, folder: Path, *, jwks: bool = False) -> float:
    output = folder / f"{provider}{'-jwks' if jwks else ''}"
    return make_package(output, provider=provider, jwks=jwks).stat().st_size / MIB


def run(*, quick: bool = False) -> list[Figure]:
    """Package every provider (quick: apigateway only), and apigateway with --jwks."""
    providers = ("apigateway",) if quick else PROVIDERS
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-package-") as tmp:
        folder = Path(tmp)
        for provider in providers:
            figures.append(
                Figure(
                    f"Lambda package, {provider} provider (zipped)",
                    "MiB",
                    _size(provider, folder),
                    TARGET_MIB,
                    "the 10 MiB target",
                    "<= 1.0",
                    "code + vendored dependencies; boto3 from the Lambda runtime",
                )
            )
        if not quick:
            jwks = _size("apigateway", folder, jwks=True)
            build("apigateway")  # leave the default build in place
            figures.append(
                Figure(
                    "Lambda package, apigateway provider with --jwks (zipped)",
                    "MiB",
                    jwks,
                    TARGET_MIB,
                    "the 10 MiB target",
                    "",
                    "adds cryptography (RS256/ES256 via RELAY_JWKS_URL): reported only",
                )
            )
    return figures


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(f"{figure.name}: {figure.value:.2f} {figure.unit} ({figure.ratio:.2f}x of 10 MiB)")
