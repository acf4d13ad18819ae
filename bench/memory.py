"""Memory: resident memory per 1,000 idle subscribed connections, the local provider and soketi.

Each server is started alone and warmed up (a few connections opened, used and closed, so that
first-use allocations are not counted); its resident set (VmRSS in /proc/<pid>/status) is read,
the same Node client opens the connections, each subscribed to a public channel of its own, and
the resident set is read again once it has settled. The target is absolute (at most 15 MB per
1,000 connections); soketi is reported beside it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.figures import Figure
from bench.local_fanout import Subscribers, publish, relay_server, soketi_server

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from bench.local_fanout import Server

TARGET_MB_PER_1000 = 15.0
CHANNEL = "idle"


def rss_bytes(pid: int) -> int:
    """The resident set of a process, from the VmRSS line of /proc/<pid>/status."""
    return parse_vmrss(Path(f"/proc/{pid}/status").read_text())


def parse_vmrss(status: str) -> int:
    """VmRSS in bytes from the text of /proc/<pid>/status."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split(":", 1)[1].split()
            if unit != "kB":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value) * 1024
    raise ValueError("no VmRSS line (a kernel thread, or the process is gone)")


def settled_rss(pid: int, *, seconds: float = 1.0, step: float = 0.1) -> int:
    """The resident set once it stops moving: the last of several reads over `seconds`."""
    deadline = time.monotonic() + seconds
    value = rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(step)
        value = rss_bytes(pid)
    return value


@dataclass(frozen=True, slots=True)
class Footprint:
    """Resident memory before and after the idle connections."""

    before: int
    after: int
    connections: int

    @property
    def mb_per_1000(self) -> float:
        """Growth in MB (10^6 bytes) per 1,000 connections."""
        return (self.after - self.before) / self.connections * 1000 / 1e6


def footprint(server: Server, connections: int, processes: int, folder: Path) -> Footprint:
    """Warm the server up, then measure what `connections` idle subscribers add."""
    warm = Subscribers(
        ws_url=server.ws_url,
        connections=20,
        processes=1,
        folder=folder,
        channel=f"{CHANNEL}-warm",
        own_channels=True,
    )
    try:
        publish(server.base, messages=3, rate=0, folder=folder, channel=f"{CHANNEL}-warm-0")
        warm.wait_for(3, stall=2)
    finally:
        warm.close()
    before = settled_rss(server.pid)
    subs = Subscribers(
        ws_url=server.ws_url,
        connections=connections,
        processes=processes,
        folder=folder,
        channel=CHANNEL,
        own_channels=True,
    )
    try:
        after = settled_rss(server.pid, seconds=2.0)
    finally:
        subs.close()
    return Footprint(before, after, connections)


def _measure(
    start: AbstractContextManager[Server], connections: int, processes: int, folder: Path
) -> Footprint:
    with start as server:
        return footprint(server, connections, processes, folder)


def run(*, quick: bool = False) -> list[Figure]:
    """The local provider against the 15 MB bound and against soketi."""
    connections, processes = (200, 1) if quick else (1000, 2)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        folder = Path(tmp)
        relay = _measure(relay_server(folder), connections, processes, folder)
        soketi = _measure(soketi_server(folder), connections, processes, folder)
    detail = (
        f"{connections:,} connections, one public channel each; RSS "
        f"{relay.before / 1e6:.1f} -> {relay.after / 1e6:.1f} MB (soketi "
        f"{soketi.before / 1e6:.1f} -> {soketi.after / 1e6:.1f} MB)"
    )
    relay_mb = max(relay.mb_per_1000, 1e-3)  # a figure is positive; growth below 1 kB is noise
    soketi_mb = max(soketi.mb_per_1000, 1e-3)
    return [
        Figure(
            "Memory per 1,000 idle subscribed connections: local provider",
            "MB",
            relay_mb,
            TARGET_MB_PER_1000,
            "the bound",
            "<= 1.0",
            detail,
        ),
        Figure(
            "Memory per 1,000 idle subscribed connections: local provider vs soketi",
            "MB",
            relay_mb,
            soketi_mb,
            "soketi",
            "",
            "soketi measured the same way, same client",
        ),
    ]


if __name__ == "__main__":
    for figure in run(quick=False):
        print(
            f"{figure.name}: {figure.value:.2f} vs {figure.baseline:.2f} {figure.unit} "
            f"= {figure.ratio:.2f}x (target {figure.target or '-'}) {figure.note}"
        )
