"""API Gateway fan-out: posting one event to 1,000 connections through a management endpoint that
takes 20 ms to answer each post, against the ideal of a perfectly used pool.

The ideal is connections x latency / concurrency (1,000 x 20 ms / 32 = 0.625 s): what the bounded
pool would take if nothing but the endpoint's latency counted. The ratio measures everything
else: signing (SigV4, as on AWS), the HTTP exchange, scheduling. The endpoint is
tests/e2e/management_stub.py in its own process, so that its work is not counted against ours.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

from bench.figures import Figure
from providers.apigateway.fanout import Fanout
from providers.apigateway.management import ManagementApi
from providers.apigateway.settings import ApiGatewaySettings
from providers.outbound.sigv4 import Credentials, Signer
from tests.e2e.harness import ROOT, free_port

LATENCY_SECONDS = 0.020
CONNECTIONS = 1000


def _start_stub(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.management_stub", str(port), str(LATENCY_SECONDS * 1000)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "listening PORT" once it accepts connections
    if not line.startswith(b"listening"):
        process.kill()
        process.wait()
        raise RuntimeError("the management stub did not start")
    return process


async def _measure(
    endpoint: str, connections: int, concurrency: int, rounds: int
) -> tuple[list[float], float]:
    signer = Signer(lambda: Credentials("AKIDBENCH", "bench-secret-key"), region="us-east-1")
    api = ManagementApi(endpoint, signer, max_connections=concurrency)
    fanout = Fanout(api, concurrency=concurrency)
    ids = [f"conn{i:06d}AAAAAA=" for i in range(connections)]
    data = b'{"event":"tick","channel":"crowd","data":"{\\"n\\":1}"}'
    try:
        await fanout.send(ids[: concurrency * 2], data)  # open the pool's sockets first
        times: list[float] = []
        cpu = time.process_time()
        for _ in range(rounds):
            started = time.perf_counter()
            report = await fanout.send(ids, data)
            times.append(time.perf_counter() - started)
            assert report.sent == connections, report.summary()
        per_post_ms = (time.process_time() - cpu) / (rounds * connections) * 1000
    finally:
        await api.aclose()
    return times, per_post_ms


def run(*, quick: bool = False) -> list[Figure]:
    """Fan out to 1,000 connections (quick: 200) at the provider's default concurrency."""
    connections = 200 if quick else CONNECTIONS
    rounds = 1 if quick else 5
    concurrency = ApiGatewaySettings.model_fields["fanout_concurrency"].default
    port = free_port()
    stub = _start_stub(port)
    try:
        times, per_post_ms = asyncio.run(
            _measure(f"http://127.0.0.1:{port}/bench", connections, concurrency, rounds)
        )
    finally:
        stub.terminate()
        stub.wait()
        if stub.stdout is not None:
            stub.stdout.close()
    ideal = connections * LATENCY_SECONDS / concurrency
    measured = statistics.median(times)
    return [
        Figure(
            f"API Gateway fan-out to {connections} connections, 20 ms per post",
            "s",
            measured,
            ideal,
            f"ideal: connections x 20 ms / {concurrency} in flight",
            "<= 1.3",
            f"median of {rounds}; best {min(times):.3f} s; {per_post_ms:.3f} ms CPU per post "
            f"(signed); {os.cpu_count()} cores shared with the endpoint",
        )
    ]


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(
            f"{figure.name}: {figure.value:.3f} vs {figure.baseline:.3f} {figure.unit} "
            f"= {figure.ratio:.2f}x (target {figure.target}) {figure.note}"
        )
