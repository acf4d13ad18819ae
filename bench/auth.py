"""Auth: POST /auth/channel through uvicorn, against a bare FastAPI route returning a constant.

The relay runs as `relay serve` (local provider); the baseline is a FastAPI app whose route of the
same path returns a constant, served by uvicorn with the same options in the same kind of process.
One Node client (bench/clients/http_load.mjs: keep-alive connections, each sending its next request
as soon as the answer is read) sends both the same form-encoded request with a bearer JWT, so the
relay verifies the token, applies the policy and signs the answer (private channel; presence adds
the user's channel_data). Runs are interleaved, relay and baseline alike, and medians reported.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt

from bench import plots
from bench.figures import Figure
from bench.nodeclients import NodeProcess
from bench.plots import Histogram
from bench.servers import process_cpu_seconds
from tests.e2e.harness import ROOT, RelayProcess, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi import FastAPI

JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"
CONCURRENCY = 16
CLIENT_PROCESSES = 2  # Node clients share the connections; the check doubles them
LATENCY_GROUP = "Auth: POST /auth/channel latency, 16 connections, closed loop"
CONSTANT = {"auth": "bench-key:" + "0" * 64}


def relay_env() -> dict[str, str]:
    """`relay serve` on the local provider."""
    return {
        "RELAY_ENV": "test",
        "RELAY_PROVIDER": "local",
        "RELAY_LOG_LEVEL": "WARNING",
        "RELAY_APP_ID": "4243",
        "RELAY_APP_KEY": "bench-key",
        "RELAY_APP_SECRET": "bench-app-secret-0123456789",
        "RELAY_JWT_SECRET": JWT_SECRET,
        "RELAY_API_KEYS": "bench-api-key-0123456789",
        # The limiter runs on every request, but one load client must not be throttled by it.
        "RELAY_RATE_AUTH_PER_SECOND": "1000000",
        "RELAY_RATE_AUTH_BURST": "1000000",
    }


def bare_app() -> FastAPI:
    """The baseline: the same path, a constant answer, nothing else."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/auth/channel")
    async def authorize_channel() -> dict[str, str]:
        return CONSTANT

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_bare(port: int) -> None:
    """Serve the bare app with the options `relay serve` gives uvicorn (app/cli.py)."""
    import uvicorn

    uvicorn.run(
        bare_app(),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        ws_max_size=64 * 1024,
        ws_ping_interval=None,
        lifespan="on",
    )


class BareProcess:
    """The bare app in its own process (`python -m bench.auth --serve-bare PORT`)."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("wb")
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.auth", "--serve-bare", str(self.port)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bare app exited: {self.log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"bare app did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        """Stop it and wait."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def token(user_id: str = "bench-user", name: str = "Bench User") -> str:
    """An HS256 JWT the relay accepts (the claims `relay token` puts in one)."""
    now = int(time.time())
    claims = {"sub": user_id, "name": name, "iat": now, "nbf": now, "exp": now + 3600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@dataclass(frozen=True, slots=True)
class Load:
    """One closed-loop run."""

    requests: int
    errors: int
    seconds: float
    histogram: Histogram
    client_cpu: float  # seconds
    server_cpu: float  # seconds

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


def load(
    url: str,
    channel: str,
    server_pid: int,
    seconds: float,
    folder: Path,
    *,
    processes: int = CLIENT_PROCESSES,
) -> Load:
    """Drive POST /auth/channel for `seconds` (after a warm-up): CONCURRENCY connections in all,
    spread over `processes` Node clients."""
    warmup = min(1.0, seconds / 2)
    clients: list[NodeProcess] = []
    try:
        for n in range(processes):
            options: dict[str, Any] = {
                "url": url + "/auth/channel",
                "method": "POST",
                "headers": {
                    "authorization": f"Bearer {token()}",
                    "content-type": "application/x-www-form-urlencoded",
                },
                "body": f"socket_id=1234.5678&channel_name={channel}",
                "concurrency": CONCURRENCY // processes,
                "seconds": seconds,
                "warmup": warmup,
            }
            clients.append(NodeProcess("http_load.mjs", options, folder / f"http_load{n}.log"))
        time.sleep(warmup)  # the server's CPU is counted from the end of the warm-up
        cpu0 = process_cpu_seconds(server_pid)
        answers = [client.expect("done", seconds + 60) for client in clients]
        server_cpu = process_cpu_seconds(server_pid) - cpu0
    finally:
        for client in clients:
            client.close()
    count = sum(a["count"] for a in answers)
    if count == 0:
        errors = sum(a["errors"] for a in answers)
        raise RuntimeError(f"no successful request to {url} ({errors} errors)")
    histogram = Histogram()
    for a in answers:
        histogram = histogram.merge(Histogram.from_pairs(a["hist"]))
    return Load(
        requests=count,
        errors=sum(a["errors"] for a in answers),
        seconds=max(a["seconds"] for a in answers),
        histogram=histogram,
        client_cpu=sum(a["cpu"] for a in answers),
        server_cpu=server_cpu,
    )


@contextlib.contextmanager
def servers(folder: Path) -> Iterator[tuple[RelayProcess, BareProcess]]:
    """The relay and the bare app, both stopped afterwards."""
    relay = RelayProcess(relay_env(), folder / "relay.log")
    try:
        bare = BareProcess(folder / "bare.log")
        try:
            yield relay, bare
        finally:
            bare.stop()
    finally:
        relay.stop()


VARIANTS = {
    "bare": "private-bench",
    "private": "private-bench",
    "presence": "presence-bench",
}


def run(*, quick: bool = False) -> list[Figure]:
    """Requests per second and latency of private and presence auth, against the bare route."""
    rounds, seconds = (1, 1.0) if quick else (5, 5.0)
    results: dict[str, list[Load]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        folder = Path(tmp)
        with servers(folder) as (relay, bare):
            targets = {
                "bare": (bare.base, bare.process.pid),
                "private": (relay.base, relay.process.pid),
                "presence": (relay.base, relay.process.pid),
            }
            order = list(VARIANTS)
            for n in range(rounds):
                # Rotate the order so that a change in the machine's load hits each alike.
                for name in order[n % 3 :] + order[: n % 3]:
                    base, pid = targets[name]
                    results[name].append(load(base, VARIANTS[name], pid, seconds, folder))
            doubled: dict[str, Load] = {}
            if not quick:  # is the client the bottleneck? Split it over twice the processes.
                for name in ("bare", "private"):
                    base, pid = targets[name]
                    doubled[name] = load(
                        base, VARIANTS[name], pid, seconds, folder, processes=2 * CLIENT_PROCESSES
                    )
    return _figures(results, doubled)


def _per_cpu_second(runs: list[Load]) -> float:
    return sum(r.requests for r in runs) / max(1e-9, sum(r.server_cpu for r in runs))


def _merged(runs: list[Load]) -> Histogram:
    merged = Histogram()
    for r in runs:
        merged = merged.merge(r.histogram)
    return merged


def _summary(runs: list[Load]) -> str:
    hist = _merged(runs)
    requests = sum(r.requests for r in runs)
    server = sum(r.server_cpu for r in runs) / requests * 1e6
    client = sum(r.client_cpu for r in runs) / sum(r.seconds for r in runs)
    return (
        f"p50/p99 {hist.percentile(50):.2f}/{hist.percentile(99):.2f} ms, "
        f"server {server:.0f} CPU-us per request, client {client:.0%} of a core"
    )


def _figures(results: dict[str, list[Load]], doubled: dict[str, Load]) -> list[Figure]:
    bare = results["bare"]
    bare_rate = statistics.median(r.rate for r in bare)
    check = ""
    if doubled:
        private_rate = statistics.median(r.rate for r in results["private"])
        check = (
            f"; the same {CONCURRENCY} connections from {2 * CLIENT_PROCESSES} client processes "
            f"instead of {CLIENT_PROCESSES}: bare "
            f"{doubled['bare'].rate / bare_rate:.2f}x, relay private "
            f"{doubled['private'].rate / private_rate:.2f}x the rate"
        )
    plots.collect(LATENCY_GROUP, "bare FastAPI route (constant)", _merged(bare))
    figures = []
    for name in ("private", "presence"):
        runs = results[name]
        plots.collect(LATENCY_GROUP, f"relay, {name} channel", _merged(runs))
        errors = sum(r.errors for r in runs)
        rate = Figure(
            f"Auth POST /auth/channel, {name} (JWT verified): requests/s",
            "req/s",
            statistics.median(r.rate for r in runs),
            bare_rate,
            "bare FastAPI route, same uvicorn",
            ">= 0.7",
            f"median of {len(runs)} interleaved runs, {CONCURRENCY} connections from "
            f"{CLIENT_PROCESSES} client processes; relay {_summary(runs)}; bare {_summary(bare)}"
            + check
            + (f"; {errors} errors" if errors else ""),
        )
        per_cpu = Figure(
            f"Auth POST /auth/channel, {name}: requests per server CPU-second",
            "req/CPU-s",
            _per_cpu_second(runs),
            _per_cpu_second(bare),
            "bare FastAPI route",
            "",
            "what one fully available core would serve: the server's own CPU time per request, "
            "which other load on the machine does not dilute as it dilutes req/s",
        )
        figures += [rate, per_cpu]
    return figures


def main() -> None:
    """`--serve-bare PORT` serves the baseline; otherwise run the quick benchmark and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve-bare", type=int, metavar="PORT")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    for figure in run(quick=not args.full):
        print(
            f"{figure.name}: {figure.value:.2f} vs {figure.baseline:.2f} {figure.unit} "
            f"= {figure.ratio:.2f}x (target {figure.target or '-'}) {figure.note}"
        )


if __name__ == "__main__":
    main()
