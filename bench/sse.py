"""Server-sent events against the lean WebSocket server: memory per idle stream, fan-out cost.

Both are served by `relay serve` (one worker), the same code, in the same run; the figures are
ratios SSE / WebSocket, as this shared machine's absolute numbers move from one minute to the next.
The SSE client is bench/clients/sse.mjs, which holds each stream as EventSource does (one
keep-alive HTTP/1.1 GET, its chunks read and split into events as they arrive); the WebSocket
client is the `ws` package of bench/clients/subscribers.mjs.

- Memory: each kind alone on a fresh server, warmed up with 20 connections of that kind, then
  1,000 idle ones, each on a channel of its own; the growth of the resident set. The kinds
  alternate (WebSocket, SSE, then the reverse); each figure is the median.
- Fan-out: two servers side by side, 1,000 WebSocket subscribers of one channel on one, 1,000 SSE
  streams of one channel on the other; interleaved bursts (bench/deliveries.py), delivered
  messages per second and the server CPU per delivered frame, which other load does not dilute.

`--against REV` adds a third relay running the code of git revision REV (a copy, first on
PYTHONPATH) for its SSE streams, interleaved with the others: before and after a change, measured
in one run.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.deliveries import burst, connect, cpu_note, cpu_per_frame_us, rounds
from bench.figures import Figure
from bench.memory import Footprint, footprint
from bench.servers import relay_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

    from bench.deliveries import Burst
    from bench.nodeclients import Subscribers
    from bench.servers import Server

ROOT = Path(__file__).resolve().parents[1]
WS, SSE = "relay WebSocket", "relay SSE"


@dataclass(frozen=True, slots=True)
class Plan:
    """Sample sizes."""

    connections: int
    processes: int
    repeats: int  # memory: runs of each kind
    settle: float
    burst_messages: int
    bursts: int


# Quick: enough frames (8,000, ~100 ms of a server's CPU) that CPU counted in 10 ms ticks is not 0.
QUICK = Plan(connections=100, processes=1, repeats=1, settle=0.4, burst_messages=40, bursts=2)
FULL = Plan(connections=1000, processes=2, repeats=2, settle=2.0, burst_messages=200, bursts=7)


@dataclass(frozen=True, slots=True)
class Variant:
    """One measured kind: a server (this code, or a copy of another revision's) and a transport."""

    name: str
    transport: str  # "ws" or "sse"
    source: Path | None = None

    def start(self, folder: Path) -> AbstractContextManager[Server]:
        """A fresh relay for this variant."""
        return relay_server(folder, source=self.source, name=self.name)


@contextlib.contextmanager
def checkout(revision: str | None, folder: Path) -> Iterator[Path | None]:
    """A copy of the code at `revision` (git archive), or None without one."""
    if revision is None:
        yield None
        return
    target = folder / "baseline-src"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    yield target


def memory(variants: list[Variant], plan: Plan, folder: Path) -> dict[str, list[Footprint]]:
    """Each variant alone on a fresh server, alternating; `repeats` runs each."""
    runs: dict[str, list[Footprint]] = {v.name: [] for v in variants}
    for n in range(plan.repeats):
        for variant in variants[:: 1 if n % 2 == 0 else -1]:
            with variant.start(folder) as server:
                runs[variant.name].append(
                    footprint(
                        server,
                        plan.connections,
                        plan.processes,
                        folder,
                        settle=plan.settle,
                        transport=variant.transport,
                    )
                )
    return runs


def fanout(variants: list[Variant], plan: Plan, folder: Path) -> dict[str, list[Burst]]:
    """Every variant's server side by side, its subscribers of its kind; interleaved bursts."""
    runs: dict[str, list[Burst]] = {v.name: [] for v in variants}
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(v.start(folder)) for v in variants]
        subs: dict[str, Subscribers] = {}
        for variant, server in zip(variants, servers, strict=True):
            subs |= connect(
                stack,
                [server],
                connections=plan.connections,
                processes=plan.processes,
                folder=folder,
                transport=variant.transport,
            )
        for server in rounds(servers, plan.bursts):
            runs[server.name].append(burst(server, subs[server.name], plan.burst_messages, folder))
    return runs


def run(*, quick: bool = False, against: str | None = None) -> list[Figure]:
    """SSE against the lean WebSocket server (and, with `against`, SSE at that revision)."""
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        folder = Path(tmp)
        with checkout(against, folder) as source:
            variants = [Variant(WS, "ws"), Variant(SSE, "sse")]
            if source is not None:
                variants.append(Variant(f"relay SSE at {against}", "sse", source))
            footprints = memory(variants, plan, folder)
            bursts = fanout(variants, plan, folder)
    return figures(variants, plan, footprints, bursts)


def figures(
    variants: list[Variant],
    plan: Plan,
    footprints: dict[str, list[Footprint]],
    bursts: dict[str, list[Burst]],
) -> list[Figure]:
    """Every SSE variant against the WebSocket server."""

    def mb(name: str) -> float:
        return max(statistics.median(f.mb_per_1000 for f in footprints[name]), 1e-3)

    def rss(name: str) -> str:
        moves = ", ".join(f"{f.before / 1e6:.1f} -> {f.after / 1e6:.1f}" for f in footprints[name])
        return f"{name} RSS {moves} MB"

    def rate(name: str) -> float:
        return statistics.median(b.rate for b in bursts[name])

    memory_sample = (
        f"{plan.connections:,} idle connections, one public channel each, each kind on a fresh "
        f"server; median of {plan.repeats}"
    )
    burst_sample = (
        f"{plan.connections:,} subscribers of one channel per server; median of {plan.bursts} "
        f"interleaved bursts of {plan.burst_messages} events"
    )
    found: list[Figure] = []
    for variant in variants:
        if variant.transport != "sse":
            continue
        name = variant.name
        found += [
            Figure(
                f"Memory per 1,000 idle connections: {name} vs WebSocket",
                "MB",
                mb(name),
                mb(WS),
                "lean WebSocket server",
                "",
                f"{memory_sample}; {rss(name)}; {rss(WS)}",
            ),
            Figure(
                f"Fan-out to {plan.connections:,} subscribers: {name} vs WebSocket, "
                "delivered messages/s",
                "msg/s",
                rate(name),
                rate(WS),
                "lean WebSocket server",
                "",
                f"{burst_sample}; {cpu_note(name, bursts[name])}; {cpu_note(WS, bursts[WS])}",
            ),
            Figure(
                f"Fan-out to {plan.connections:,} subscribers: {name} vs WebSocket, server CPU "
                "per 1,000 frames",
                "CPU-ms",
                cpu_per_frame_us(bursts[name]),
                cpu_per_frame_us(bursts[WS]),
                "lean WebSocket server",
                "",
                "CPU the server spent per delivered frame; unlike the rate, not diluted by other "
                "load on the machine",
            ),
        ]
    return found


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.sse [--full] [--against REV]`: print the figures."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="full sample sizes")
    parser.add_argument("--against", help="also measure SSE at this git revision")
    args = parser.parse_args(argv)
    for f in run(quick=not args.full, against=args.against):
        print(f"{f.name}: {f.value:.2f} vs {f.baseline:.2f} {f.unit} = {f.ratio:.2f}x {f.note}")


if __name__ == "__main__":
    main()
