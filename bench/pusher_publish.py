"""Publishing to a Pusher-protocol server: relay -> soketi against the official SDK -> soketi.

Both sides publish one event per call from the same kind of load client (threads, one keep-alive
HTTP session each), so the difference is what stands between the caller and soketi: the SDK
directly, or the relay (which signs, checks, and coalesces concurrent publishes into batch calls).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pusher

from bench.figures import Figure, percentile
from tests.e2e.harness import RelayProcess
from tests.e2e.soketi import SoketiProcess

APP_ID, KEY, SECRET = "5151", "bench-key", "bench-secret-0123456789abcdef"
API_KEY = "bench-api-key-0123456789"
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"


def _timed(call: Callable[[int], None], count: int) -> list[float]:
    latencies = []
    for i in range(count):
        start = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - start)
    return latencies


def _concurrent(make_caller: Callable[[], Callable[[int], None]], workers: int, each: int) -> tuple[float, list[float]]:
    """Run `workers` threads of `each` calls; return (messages per second, latencies)."""
    callers = [make_caller() for _ in range(workers)]
    for caller in callers:  # open every connection before the clock starts
        caller(-1)
    results: list[list[float]] = [[] for _ in range(workers)]
    barrier = threading.Barrier(workers + 1)

    def work(n: int) -> None:
        barrier.wait()
        results[n] = _timed(callers[n], each)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies = [x for r in results for x in r]
    return len(latencies) / elapsed, latencies


def run(*, quick: bool = False) -> list[Figure]:
    """Measure both paths sequentially and with 32 concurrent publishers."""
    sequential = 100 if quick else 1000
    workers, each = 32, (10 if quick else 100)
    folder = Path(tempfile.mkdtemp(prefix="bench-pusher-"))
    soketi = SoketiProcess(app_id=APP_ID, key=KEY, secret=SECRET, log_path=folder / "soketi.log")
    relay = RelayProcess(
        {
            "RELAY_ENV": "test",
            "RELAY_PROVIDER": "pusher",
            "RELAY_API_KEYS": API_KEY,
            "RELAY_JWT_SECRET": JWT_SECRET,
            "RELAY_LOG_LEVEL": "WARNING",
            "PUSHER_APP_ID": APP_ID,
            "PUSHER_KEY": KEY,
            "PUSHER_SECRET": SECRET,
            "PUSHER_HOST": "127.0.0.1",
            "PUSHER_PORT": str(soketi.port),
            "PUSHER_USE_TLS": "false",
        },
        folder / "relay.log",
    )
    try:

        def sdk_caller() -> Callable[[int], None]:
            client = pusher.Pusher(
                app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1", port=soketi.port, ssl=False
            )
            return lambda i: client.trigger("bench", "tick", {"i": i})

        def relay_caller() -> Callable[[int], None]:
            http = httpx.Client(base_url=relay.base, headers={"X-API-Key": API_KEY}, timeout=10)

            def call(i: int) -> None:
                body = {"name": "tick", "channel": "bench", "data": {"i": i}}
                response = http.post("/v1/events", json=body)
                response.raise_for_status()

            return call

        sdk_seq = _timed(sdk_caller(), sequential)
        relay_seq = _timed(relay_caller(), sequential)
        sdk_rate, sdk_lat = _concurrent(sdk_caller, workers, each)
        relay_rate, relay_lat = _concurrent(relay_caller, workers, each)
    finally:
        relay.stop()
        soketi.stop()
    ms = 1000
    return [
        Figure(
            "publish, 32 concurrent publishers: throughput",
            "msg/s",
            relay_rate,
            sdk_rate,
            "pusher SDK -> soketi, one event per call",
            ">= 2.0",
            f"p50/p99 latency relay {percentile(relay_lat, 50) * ms:.1f}/"
            f"{percentile(relay_lat, 99) * ms:.1f} ms, SDK {percentile(sdk_lat, 50) * ms:.1f}/"
            f"{percentile(sdk_lat, 99) * ms:.1f} ms",
        ),
        Figure(
            "publish, sequential: p50 latency",
            "ms",
            percentile(relay_seq, 50) * ms,
            percentile(sdk_seq, 50) * ms,
            "pusher SDK -> soketi",
            "<= 1.2",
            f"p99 relay {percentile(relay_seq, 99) * ms:.2f} ms, SDK {percentile(sdk_seq, 99) * ms:.2f} ms",
        ),
    ]


if __name__ == "__main__":
    for figure in run(quick=True):
        print(f"{figure.name}: {figure.value:.2f} vs {figure.baseline:.2f} {figure.unit} "
              f"= {figure.ratio:.2f}x (target {figure.target}) {figure.note}")
