"""`relay serve --workers N`: N processes serving one listening socket, joined by the backplane.

The parent binds the port once and starts each worker as a fresh interpreter (multiprocessing's
`spawn`, as uvicorn's own supervisor does: no event loop or lock is inherited half-way), handing it
the socket; every worker then runs what a single `relay serve` runs (app/serving.py), and the
kernel spreads new connections over the workers that accept. What the workers share crosses the
backplane (providers/local/backplane_redis.py: deliveries, presence, users, counts, cache) and the
store (rate limits, idempotency), so both must be shared ones: RELAY_BACKPLANE=redis on the local
provider and RELAY_STORE=redis or dynamodb, else two workers would split channels and limits
between them. A worker that dies is started again (a socket it held is gone; its presence members
leave as the backplane sweeps a dead process). SIGTERM or SIGINT goes to every worker, each
draining as one process does, and the parent waits for them within the drain bound.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from typing import TYPE_CHECKING, Any

from core.errors import ConfigurationError

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from core.settings import Settings

log = logging.getLogger(__name__)

MAX_WORKERS = 64
RESTART_BACKOFF_SECONDS = 1.0  # between a worker's death and its replacement
SUPERVISE_SECONDS = 0.2


def worker_count(text: str) -> int:
    """`--workers`: a count from 1 to 64, or `auto` for one per core this process may use."""
    if text == "auto":
        return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise ValueError(f"--workers takes a number from 1 to {MAX_WORKERS}, or auto")
    return int(text)


def check_shared(settings: Settings, workers: int) -> None:
    """Refuse several workers whose state would not be shared, naming what to set."""
    if workers == 1:
        return
    problems = []
    if "local" in settings.providers and settings.backplane != "redis":
        problems.append(
            f"RELAY_BACKPLANE: --workers {workers} needs redis (with RELAY_REDIS_URL): each "
            "worker would otherwise hold its own channels, presence and users"
        )
    if settings.store == "memory":
        problems.append(
            f"RELAY_STORE: --workers {workers} needs redis or dynamodb: each worker would "
            "otherwise keep its own rate limits and idempotency keys"
        )
    if problems:
        raise ConfigurationError(*problems)


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """The one listening socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def run(settings: Settings, *, host: str, port: int, workers: int, backlog: int) -> int:
    """Serve with `workers` processes until SIGTERM or SIGINT; 0 once all have stopped."""
    sock = listen(host, port, backlog)
    context = multiprocessing.get_context("spawn")
    # prometheus-client's multiprocess mode: every worker writes its counts here, and a scrape
    # answered by any worker sums them (app/metrics.py). A fresh folder per run: counts restart.
    folder = tempfile.mkdtemp(prefix="relay-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    stopping: list[int] = []

    def start() -> BaseProcess:
        process = context.Process(target=_serve, args=(sock, host, port), name="relay-worker")
        process.start()
        return process

    def stop(signum: int, _frame: Any) -> None:
        if not stopping:
            stopping.append(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    apart = None
    try:
        if settings.metrics and settings.metrics_address is not None:
            from app.metrics import serve_apart  # every worker's files, summed, on one listener

            apart = serve_apart(settings.metrics_address)
        processes = [start() for _ in range(workers)]
        log.info("relay: %d workers serving on %s:%d", workers, host, port)
        while not stopping:
            time.sleep(SUPERVISE_SECONDS)
            for index, process in enumerate(processes):
                if not process.is_alive() and not stopping:
                    log.warning(
                        "worker %s exited with %s: starting another", process.pid, process.exitcode
                    )
                    _forget(process.pid)
                    time.sleep(RESTART_BACKOFF_SECONDS)
                    processes[index] = start()
        sock.close()  # no connection lands on a socket none of the draining workers accepts
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, stopping[0])
        deadline = time.monotonic() + settings.drain_seconds + 5
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
    finally:
        if apart is not None:
            apart.shutdown()
            apart.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _forget(pid: int | None) -> None:
    """A dead worker's live gauges stop counting (its counters' totals stay)."""
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        with contextlib.suppress(ImportError, OSError):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _serve(sock: socket.socket, host: str, port: int) -> None:
    """One worker: the relay built from the environment, served on the inherited socket."""
    from app import logs, serving
    from app.main import create_app
    from providers.registry import load_settings_with_provider

    logs.configure("INFO")
    settings = serving.fit_to_descriptors(load_settings_with_provider())
    logs.configure(settings.log_level)
    app = create_app(settings, metrics=settings.metrics)
    config = serving.build_config(app, settings, host=host, port=port, relay=app.state.relay)
    provider = app.state.relay.provider
    server = serving.RelayServer(config, provider=provider, drain_seconds=settings.drain_seconds)
    server.run(sockets=[sock])
