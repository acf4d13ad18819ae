"""Memory: resident memory per 1,000 idle subscribed connections, the local provider and soketi.

Each server is started alone and warmed up (a few connections opened, used and closed, so that
first-use allocations are not counted); its resident set (VmRSS in /proc/<pid>/status, summed over
its processes: `relay serve --workers 2` is a parent and two workers) is read, the same Node client
opens the connections, each subscribed to a public channel of its own, and the resident set is read
again once it has settled. The client is the `ws` package offering permessage-deflate, as browsers
do: a server that accepted it would keep compression state per connection. Targets: the one-worker
relay at most 12 MB per 1,000, and at most 1.3x soketi measured the same way. Servers alternate
(relay, soketi, relay with two workers), twice in a full run, and each figure is the median.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.figures import Figure
from bench.nodeclients import Subscribers, publish
from bench.servers import relay_server, soketi_server

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from bench.servers import Server

TARGET_MB_PER_1000 = 12.0
TARGET_TO_SOKETI = 1.3
CHANNEL = "idle"


def settled_rss(server: Server, *, seconds: float = 1.0, step: float = 0.1) -> int:
    """The resident set once it stops moving: the last of several reads over `seconds`."""
    deadline = time.monotonic() + seconds
    value = server.rss()
    while time.monotonic() < deadline:
        time.sleep(step)
        value = server.rss()
    return value


@dataclass(frozen=True, slots=True)
class Footprint:
    """Resident memory before and after the idle connections."""

    before: int
    after: int
    connections: int
    negotiated: str = ""

    @property
    def mb_per_1000(self) -> float:
        """Growth in MB (10^6 bytes) per 1,000 connections."""
        return (self.after - self.before) / self.connections * 1000 / 1e6


def footprint(
    server: Server,
    connections: int,
    processes: int,
    folder: Path,
    *,
    settle: float = 2.0,
    transport: str = "ws",
) -> Footprint:
    """Warm the server up, then measure what `connections` idle subscribers add (`transport`
    "sse": server-sent-event streams instead of sockets, warmed up with streams too)."""
    url = server.sse_url if transport == "sse" else server.ws_url
    warm = Subscribers(
        ws_url=url,
        connections=20 * server.workers,
        processes=1,
        folder=folder,
        channel=f"{CHANNEL}-warm",
        own_channels=True,
        transport=transport,
    )
    try:
        publish(
            server.base,
            app_id=server.app_id,
            messages=3,
            rate=0,
            folder=folder,
            channel=f"{CHANNEL}-warm-0",
        )
        warm.wait_for(3, stall=2)
    finally:
        warm.close()
    before = settled_rss(server, seconds=settle / 2)
    subs = Subscribers(
        ws_url=url,
        connections=connections,
        processes=processes,
        folder=folder,
        channel=CHANNEL,
        own_channels=True,
        transport=transport,
    )
    try:
        after = settled_rss(server, seconds=settle)
    finally:
        subs.close()
    return Footprint(before, after, connections, subs.negotiated())


def _measure(
    start: AbstractContextManager[Server],
    connections: int,
    processes: int,
    folder: Path,
    settle: float,
) -> Footprint:
    with start as server:
        return footprint(server, connections, processes, folder, settle=settle)


def run(*, quick: bool = False) -> list[Figure]:
    """The local provider against the 12 MB bound and against soketi."""
    connections, processes, repeats, settle = (200, 1, 1, 0.4) if quick else (1000, 2, 2, 2.0)
    starts: dict[str, Callable[[Path], AbstractContextManager[Server]]] = {
        "relay": relay_server,
        "soketi": soketi_server,
        "relay 2 workers": lambda folder: relay_server(folder, workers=2),
    }
    runs: dict[str, list[Footprint]] = {name: [] for name in starts}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        folder = Path(tmp)
        for n in range(repeats):
            for name in list(starts)[:: 1 if n % 2 == 0 else -1]:
                start = starts[name](folder)
                runs[name].append(_measure(start, connections, processes, folder, settle))

    def mb(name: str) -> float:
        # A figure is positive; growth below 1 kB per 1,000 is noise.
        return max(statistics.median(f.mb_per_1000 for f in runs[name]), 1e-3)

    def detail(name: str) -> str:
        rss = ", ".join(f"{f.before / 1e6:.1f} -> {f.after / 1e6:.1f}" for f in runs[name])
        return f"{name} RSS {rss} MB, answered deflate with {runs[name][0].negotiated}"

    sample = (
        f"{connections:,} connections offering permessage-deflate (ws client), one public "
        f"channel each; median of {repeats}"
    )
    relay, soketi, workers = mb("relay"), mb("soketi"), mb("relay 2 workers")
    title = "Memory per 1,000 idle subscribed connections"
    return [
        Figure(
            f"{title}: local provider, one worker",
            "MB",
            relay,
            TARGET_MB_PER_1000,
            "the bound",
            "<= 1.0",
            f"{sample}; {detail('relay')}",
        ),
        Figure(
            f"{title}: local provider vs soketi",
            "MB",
            relay,
            soketi,
            "soketi",
            f"<= {TARGET_TO_SOKETI}",
            f"{sample}; {detail('soketi')}",
        ),
        Figure(
            f"{title}: local provider, 2 workers (processes summed) vs soketi",
            "MB",
            workers,
            soketi,
            "soketi",
            "",
            f"{sample}; {detail('relay 2 workers')}",
        ),
    ]


if __name__ == "__main__":
    for figure in run(quick=False):
        print(
            f"{figure.name}: {figure.value:.2f} vs {figure.baseline:.2f} {figure.unit} "
            f"= {figure.ratio:.2f}x (target {figure.target or '-'}) {figure.note}"
        )
