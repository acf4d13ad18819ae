"""Cold start: the Lambda handler's import and first response, per provider, in a fresh process.

Each sample is a new Python process that imports the handler (`app.lambda_handler` when it
exists, else `create_app()` wrapped in Mangum with lifespan="off", as that module does) and then
answers one API Gateway HTTP API event for GET /health. The figure is the sum, import + first
response: what a cold invocation waits, however a handler splits its work between module import
and first call (app.lambda_handler builds the relay on its first call). The baseline is a bare
FastAPI app with one constant route behind Mangum (bench/bare_lambda.py), measured the same way in
the same run; the same app built with the garbage collector paused, as app.lambda_handler builds,
is measured too and reported beside each figure. Runs are
interleaved (every variant once per round) and medians reported; the interpreter's own start-up is
the same for every variant and not counted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from bench import plots
from bench.figures import Figure
from bench.plots import Histogram
from tests.e2e.harness import ROOT

# Every provider: at most 1.10x the bare FastAPI + Mangum handler (issue 13).
TARGET = "<= 1.10"
HEAVY_SDKS = ("pusher", "ably", "supabase", "realtime", "boto3", "botocore", "redis", "nacl")
LATENCY_GROUP = "Cold start: import and first response, fresh process (ms)"

RELAY = {
    "RELAY_ENV": "test",
    "RELAY_LOG_LEVEL": "WARNING",
    "RELAY_APP_ID": "4242",
    "RELAY_APP_KEY": "bench-key",
    "RELAY_APP_SECRET": "bench-app-secret-0123456789",
    "RELAY_JWT_SECRET": "bench-jwt-secret-0123456789abcdef0123456789",
    "RELAY_API_KEYS": "bench-api-key-0123456789",
}
# Dummy credentials: nothing is contacted, the handler only has to build and answer /health.
PROVIDER_ENV: dict[str, dict[str, str]] = {
    "local": {},
    "pusher": {"PUSHER_APP_ID": "4242", "PUSHER_KEY": "bench-key", "PUSHER_SECRET": "x" * 24},
    "ably": {"ABLY_API_KEY": "bench.app:secret0123456789"},
    "supabase": {
        "SUPABASE_URL": "https://bench.supabase.co",
        "SUPABASE_SERVICE_ROLE_KEY": "bench-service-role-key",
        "SUPABASE_JWT_SECRET": "bench-supabase-jwt-secret-0123456789abcdef",
    },
    "apigateway": {
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "APIGATEWAY_ENDPOINT": "http://127.0.0.1:9",
        "APIGATEWAY_MANAGEMENT_ENDPOINT": "http://127.0.0.1:9",
        "RELAY_APIGATEWAY_ENDPOINT": "http://127.0.0.1:9",
    },
    # The HTTP function of an appsync deployment (its Event API authorizer and handlers are
    # another entry point, app/lambda_appsync.py, measured at 0.5-0.6x the bare handler).
    "appsync": {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "APPSYNC_ENDPOINT": "http://127.0.0.1:9",
    },
}

# The event API Gateway's HTTP API (payload 2.0) sends for GET /health.
EVENT: dict[str, Any] = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/health",
    "rawQueryString": "",
    "headers": {"host": "relay.example", "accept": "application/json", "user-agent": "bench"},
    "requestContext": {
        "accountId": "000000000000",
        "apiId": "bench",
        "domainName": "relay.example",
        "domainPrefix": "relay",
        "http": {
            "method": "GET",
            "path": "/health",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "bench",
        },
        "requestId": "bench",
        "routeKey": "$default",
        "stage": "$default",
        "time": "01/Jan/2025:00:00:00 +0000",
        "timeEpoch": 1735689600000,
    },
    "isBase64Encoded": False,
}

# Run in the fresh process. The clock starts after the interpreter is up: what is measured is
# what the handler's module costs, not Python's own start-up (the same for every variant).
_PROBE = """
import importlib.util, json, sys, time
started = time.perf_counter()
{build}
built = time.perf_counter()
answer = handler({event!r}, None)
answered = time.perf_counter()
heavy = {heavy!r}
print(json.dumps({{
    "import_ms": (built - started) * 1000,
    "first_ms": (answered - built) * 1000,
    "status": answer["statusCode"],
    "how": how,
    "sdks": sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy)),
}}))
"""

RELAY_BUILD = """
if importlib.util.find_spec("app.lambda_handler") is not None:
    from app.lambda_handler import handler
    how = "app.lambda_handler"
else:
    from mangum import Mangum
    from app.main import create_app
    handler = Mangum(create_app(), lifespan="off")
    how = "create_app() + Mangum"
"""

BARE_BUILD = """
from bench.bare_lambda import handler
how = "bare FastAPI + Mangum (bench/bare_lambda.py)"
"""

# The same baseline built the way app.lambda_handler builds: collector paused, then frozen. The
# figure against it (reported, not targeted) shows what the relay adds beyond that technique.
PAUSED = "paused"
PAUSED_BUILD = """
import gc
gc.disable()
from bench.bare_lambda import handler
gc.freeze()
gc.enable()
how = "bare FastAPI + Mangum, collector paused"
"""


def _build(variant: str | None) -> str:
    if variant is None:
        return BARE_BUILD
    return PAUSED_BUILD if variant == PAUSED else RELAY_BUILD


def probe_program(build: str) -> str:
    """The program a fresh process runs for one sample."""
    return _PROBE.format(build=build, event=EVENT, heavy=HEAVY_SDKS)


@dataclass(frozen=True, slots=True)
class Sample:
    """One fresh process."""

    import_ms: float
    first_ms: float
    how: str
    sdks: tuple[str, ...]

    @property
    def total_ms(self) -> float:
        """From the first import to the first answer: what a cold invocation waits."""
        return self.import_ms + self.first_ms


class Unavailable(Exception):
    """The variant cannot start here (its provider is absent or refuses dummy settings)."""


def _env(provider: str | None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "PYTHON"))}
    if provider is None or provider == PAUSED:
        return base
    return {**base, **RELAY, "RELAY_PROVIDER": provider, **PROVIDER_ENV[provider]}


def sample(provider: str | None) -> Sample:
    """Run one fresh process (provider None: the bare baseline)."""
    build = _build(provider)
    done = subprocess.run(
        [sys.executable, "-c", probe_program(build)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=_env(provider),
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(last[:300])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["status"] != 200:
        raise Unavailable(f"GET /health answered {result['status']}")
    return Sample(result["import_ms"], result["first_ms"], result["how"], tuple(result["sdks"]))


def import_profile(provider: str | None) -> dict[str, float]:
    """Import time (ms) per top-level package in one fresh `-X importtime` process."""
    build = _build(provider)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe_program(build)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=_env(provider),
        check=False,
    )
    return package_times(done.stderr)


_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+\d+ \| *(\S+)$")


def package_times(importtime: str) -> dict[str, float]:
    """Milliseconds per top-level package from `-X importtime` output.

    Each module's own (self) time is charged to its top-level package, so nothing is counted
    twice: a package's figure is what importing its modules cost, not what they imported.
    """
    totals: dict[str, float] = {}
    for line in importtime.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            package = m.group(2).split(".")[0]
            totals[package] = totals.get(package, 0.0) + int(m.group(1)) / 1000
    return totals


def added_imports(relay: dict[str, float], bare: dict[str, float]) -> list[tuple[str, float]]:
    """Packages by how much more the relay's import spends in them than the bare app's."""
    added = {name: ms - bare.get(name, 0.0) for name, ms in relay.items()}
    return sorted(((n, ms) for n, ms in added.items() if ms > 0), key=lambda i: -i[1])


def run(*, quick: bool = False) -> list[Figure]:
    """Median import and first-response times per provider against the bare app."""
    rounds = 1 if quick else 15
    variants: list[str | None] = [None, PAUSED, *PROVIDER_ENV]
    for variant in [] if quick else variants:  # one discarded run each: caches written, disk warm
        with contextlib.suppress(Unavailable):
            sample(variant)
    samples: dict[str | None, list[Sample]] = {v: [] for v in variants}
    skipped: dict[str, str] = {}
    for _ in range(rounds):
        for variant in variants:
            if variant in skipped:
                continue
            try:
                samples[variant].append(sample(variant))
            except Unavailable as exc:
                if variant in (None, PAUSED):
                    raise RuntimeError(f"the bare baseline failed: {exc}") from exc
                skipped[variant] = str(exc)
    profile = [] if quick else added_imports(import_profile("local"), import_profile(None))
    return _figures(samples, skipped, profile)


def _figures(
    samples: dict[str | None, list[Sample]],
    skipped: dict[str, str],
    profile: list[tuple[str, float]],
) -> list[Figure]:
    bare = samples[None]
    bare_total = statistics.median(s.total_ms for s in bare)
    bare_split = _split(bare)
    paused_total = statistics.median(s.total_ms for s in samples[PAUSED])
    plots.collect(LATENCY_GROUP, "bare FastAPI + Mangum", _hist(bare))
    plots.collect(LATENCY_GROUP, "bare, collector paused", _hist(samples[PAUSED]))
    figures = []
    for provider, runs in samples.items():
        if provider in (None, PAUSED) or provider in skipped or not runs:
            continue
        sdks = sorted({m for s in runs for m in s.sdks})
        total = statistics.median(s.total_ms for s in runs)
        notes = [
            f"{runs[0].how}; median of {len(runs)}: {_split(runs)} (bare: {bare_split})",
            f"against the bare app built with the collector paused too ({paused_total:.0f} ms): "
            f"{total / paused_total:.2f}x",
            f"SDKs loaded: {', '.join(sdks) or 'none'}",
        ]
        if provider == "local":
            notes += [f"{name} not measured: {why}" for name, why in skipped.items()]
            if profile:
                largest = ", ".join(f"{name} +{ms:.0f}" for name, ms in profile[:8])
                notes.append(f"imports beyond the bare app's (ms, -X importtime): {largest}")
        plots.collect(LATENCY_GROUP, provider, _hist(runs))
        figures.append(
            Figure(
                f"Cold start, {provider}: import + first response (GET /health)",
                "ms",
                total,
                bare_total,
                "bare FastAPI + Mangum",
                TARGET,
                "; ".join(notes),
            )
        )
    return figures


def _split(runs: list[Sample]) -> str:
    imp = statistics.median(s.import_ms for s in runs)
    first = statistics.median(s.first_ms for s in runs)
    return f"import {imp:.0f} + first response {first:.0f} ms"


def _hist(runs: list[Sample]) -> Histogram:
    return Histogram.from_samples(s.total_ms for s in runs)


if __name__ == "__main__":
    for figure in run(quick="--full" not in sys.argv):
        print(
            f"{figure.name}: {figure.value:.2f} vs {figure.baseline:.2f} {figure.unit} "
            f"= {figure.ratio:.2f}x (target {figure.target or '-'}) {figure.note}"
        )
