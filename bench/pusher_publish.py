"""Publishing to a Pusher-protocol server (soketi): the relay against the official SDK.

Two levels, each against the SDK publishing one event per call straight to soketi:
- provider: the relay's Pusher provider -> soketi, called in-process (the relay's own hop; the
  targets of the Pusher issue apply here);
- end to end: a backend -> `relay serve` over HTTP -> soketi (one more hop than the SDK makes;
  reported, no target).
Concurrent runs use 32 publishers: threads for the SDK (it blocks), tasks for the async provider,
threads with keep-alive sessions for the HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pusher

from bench.figures import Figure, percentile
from core.provider import Message
from providers.pusher.provider import PusherProvider
from providers.pusher.settings import PusherSettings
from tests.e2e.harness import RelayProcess
from tests.e2e.soketi import SoketiProcess

APP_ID, KEY, SECRET = "5151", "bench-key", "bench-secret-0123456789abcdef"
API_KEY = "bench-api-key-0123456789"
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"
WORKERS = 32
Caller = Callable[[int], None]


def _timed(call: Caller, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        start = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - start)
    return latencies


def _threads(make_caller: Callable[[], Caller], each: int) -> tuple[float, list[float]]:
    """WORKERS threads of `each` calls: (messages per second, latencies)."""
    callers = [make_caller() for _ in range(WORKERS)]
    for caller in callers:  # open every connection before the clock starts
        caller(-1)
    results: list[list[float]] = [[] for _ in range(WORKERS)]
    barrier = threading.Barrier(WORKERS + 1)

    def work(n: int) -> None:
        barrier.wait()
        results[n] = _timed(callers[n], each)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies = [x for r in results for x in r]
    return len(latencies) / elapsed, latencies


async def _provider_runs(
    port: int, sequential: int, each: int, sdk: Caller
) -> tuple[list[float], list[float], float, list[float], float]:
    """Sequential calls interleaved with the SDK's (same moment, same machine load), then the
    concurrent run: (provider latencies, SDK latencies, rate, concurrent latencies, per call)."""
    settings = PusherSettings(
        app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1", port=port, use_tls=False
    )
    provider = PusherProvider(settings)
    try:
        await provider.publish([Message("bench", "tick", "{}", None, "warm:0")])
        sdk(-1)
        seq: list[float] = []
        sdk_seq: list[float] = []
        for i in range(sequential):
            start = time.perf_counter()
            await provider.publish([Message("bench", "tick", f'{{"i":{i}}}', None, f"s:{i}")])
            seq.append(time.perf_counter() - start)
            start = time.perf_counter()
            sdk(i)  # blocks the loop, which has nothing else to do between the two
            sdk_seq.append(time.perf_counter() - start)
        lat: list[float] = []

        async def worker(w: int) -> None:
            for i in range(each):
                start = time.perf_counter()
                await provider.publish([Message("bench", "tick", "{}", None, f"{w}:{i}")])
                lat.append(time.perf_counter() - start)

        calls = provider.batches.calls
        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(WORKERS)))
        rate = len(lat) / (time.perf_counter() - start)
        per_call = len(lat) / max(1, provider.batches.calls - calls)
        return seq, sdk_seq, rate, lat, per_call
    finally:
        await provider.aclose()


def _ms(samples: list[float], q: float) -> str:
    return f"{percentile(samples, q) * 1000:.2f}"


def run(*, quick: bool = False) -> list[Figure]:
    """Measure the SDK, the provider and the relay over HTTP, each sequential and concurrent."""
    sequential = 100 if quick else 1000
    each = 10 if quick else 100
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
    sessions: list[Any] = []  # every client's session, closed at the end
    try:

        def sdk_caller() -> Caller:
            client = pusher.Pusher(
                app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1", port=soketi.port, ssl=False
            )
            sessions.append(client._pusher_client.http.session)
            return lambda i: client.trigger("bench", "tick", {"i": i})

        def http_caller() -> Caller:
            http = httpx.Client(base_url=relay.base, headers={"X-API-Key": API_KEY}, timeout=10)
            sessions.append(http)

            def call(i: int) -> None:
                body = {"name": "tick", "channel": "bench", "data": {"i": i}}
                http.post("/v1/events", json=body).raise_for_status()

            return call

        sdk_rate, sdk_lat = _threads(sdk_caller, each)
        # uvloop where installed, as `relay serve` runs (uvicorn picks it).
        runner: Any = asyncio.run
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
        prov_seq, sdk_seq, prov_rate, prov_lat, per_call = runner(
            _provider_runs(soketi.port, sequential, each, sdk_caller())
        )
        http_seq = _timed(http_caller(), sequential)
        http_rate, http_lat = _threads(http_caller, each)
    finally:
        for session in sessions:
            session.close()
        relay.stop()
        soketi.stop()
    sdk_name = "pusher SDK -> soketi, one event per call"
    return [
        Figure(
            "Pusher publish, 32 publishers: relay provider -> soketi",
            "msg/s",
            prov_rate,
            sdk_rate,
            sdk_name,
            ">= 2.0",
            f"{per_call:.1f} events per batch call; "
            f"p50/p99 {_ms(prov_lat, 50)}/{_ms(prov_lat, 99)} ms "
            f"vs SDK {_ms(sdk_lat, 50)}/{_ms(sdk_lat, 99)} ms",
        ),
        Figure(
            "Pusher publish, sequential p50: relay provider -> soketi",
            "ms",
            percentile(prov_seq, 50) * 1000,
            percentile(sdk_seq, 50) * 1000,
            sdk_name,
            "<= 1.2",
            f"calls interleaved with the SDK's; p99 {_ms(prov_seq, 99)} vs SDK "
            f"{_ms(sdk_seq, 99)} ms",
        ),
        Figure(
            "Pusher publish, 32 publishers: backend -> relay (HTTP) -> soketi",
            "msg/s",
            http_rate,
            sdk_rate,
            sdk_name,
            "",
            f"p50/p99 {_ms(http_lat, 50)}/{_ms(http_lat, 99)} ms; one more hop than the SDK",
        ),
        Figure(
            "Pusher publish, sequential p50: backend -> relay (HTTP) -> soketi",
            "ms",
            percentile(http_seq, 50) * 1000,
            percentile(sdk_seq, 50) * 1000,
            sdk_name,
            "",
            f"p99 {_ms(http_seq, 99)} vs SDK {_ms(sdk_seq, 99)} ms; one more hop than the SDK",
        ),
    ]


if __name__ == "__main__":
    for figure in run(quick=True):
        print(
            f"{figure.name}: {figure.value:.2f} vs {figure.baseline:.2f} {figure.unit} "
            f"= {figure.ratio:.2f}x (target {figure.target or '-'}) {figure.note}"
        )
