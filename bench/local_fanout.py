"""Fan-out: one channel, 1,000 WebSocket subscribers, the local provider against soketi.

Three servers run side by side and take turns: `relay serve` (one worker), `relay serve --workers
2` on the Redis backplane, and soketi. The same Node load client runs against each
(bench/clients): subscriber processes on the `ws` package, which offers permessage-deflate as
every browser does (what each server answered is reported), and a publisher that signs Pusher HTTP
API calls, which all of them serve. Each event carries the publisher's clock; each subscriber takes
the latency on receipt. Connections to the two-worker relay go to its one port, and the kernel
spreads them over the workers, as a load balancer in front of one host would.

- Throughput: interleaved bursts (bench/deliveries.py), the median per server.
- Latency: events on a fixed schedule at half of the one-worker relay's measured throughput (the
  same schedule for every server), in two halves in rotating order.
- What a publish costs beside its frames: server CPU per event to two subscribers (a Redis
  backplane and store add round trips per publish that soketi's single process does not make).
- Whether the load client is the limit (full runs): the bursts repeated with twice the subscriber
  processes, and with the light wire client (bench/clients/wire.mjs, no extension offered), which
  costs less CPU per frame.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench import plots
from bench.deliveries import (
    burst,
    connect,
    cpu_note,
    cpu_per_frame_us,
    paced,
    publish_cost,
    rounds,
)
from bench.figures import Figure
from bench.plots import Histogram
from bench.servers import relay_server, soketi_server

if TYPE_CHECKING:
    from bench.deliveries import Burst
    from bench.servers import Server

LATENCY_GROUP = "Local fan-out: end-to-end latency, 1,000 subscribers, paced"
RELAY, WORKERS, SOKETI = "relay", "relay 2 workers", "soketi"


@dataclass(frozen=True, slots=True)
class Plan:
    """Sample sizes."""

    connections: int
    processes: int
    burst_messages: int
    bursts: int
    paced_seconds: float
    cross_checks: bool
    cost_messages: int


QUICK = Plan(
    connections=100,
    processes=1,
    burst_messages=20,
    bursts=2,
    paced_seconds=1,
    cross_checks=False,
    cost_messages=50,
)
FULL = Plan(
    connections=1000,
    processes=2,
    burst_messages=200,
    bursts=7,
    paced_seconds=10,
    cross_checks=True,
    cost_messages=1000,
)


@dataclass(slots=True)
class Results:
    """Everything measured, per server name."""

    bursts: dict[str, list[Burst]]
    latency: dict[str, Histogram]
    paced_rate: float = 0.0
    negotiated: dict[str, str] = field(default_factory=dict)
    spread: str = ""  # how the two-worker relay's connections landed on its workers
    doubled: dict[str, list[Burst]] = field(default_factory=dict)
    wire: dict[str, list[Burst]] = field(default_factory=dict)
    publish_cost: dict[str, list[float]] = field(default_factory=dict)

    def rate(self, name: str, runs: dict[str, list[Burst]] | None = None) -> float:
        """Median delivered rate."""
        return statistics.median(b.rate for b in (runs or self.bursts)[name])


def measure(servers: list[Server], plan: Plan, folder: Path) -> Results:
    """Interleaved bursts, the paced latency runs, then the client cross-checks."""
    names = [s.name for s in servers]
    results = Results({n: [] for n in names}, {n: Histogram() for n in names})
    with contextlib.ExitStack() as stack:
        subs = connect(
            stack, servers, connections=plan.connections, processes=plan.processes, folder=folder
        )
        results.negotiated = {n: subs[n].negotiated() for n in names}
        results.spread = _spread(servers)
        for server in rounds(servers, plan.bursts):
            results.bursts[server.name].append(
                burst(server, subs[server.name], plan.burst_messages, folder)
            )
        results.paced_rate = _schedule(results.rate(RELAY), plan)
        count = max(10, round(results.paced_rate * plan.paced_seconds / 2))
        for server in rounds(servers, 2):
            report = paced(server, subs[server.name], count, results.paced_rate, folder)
            results.latency[server.name] = results.latency[server.name].merge(report.histogram)
    results.publish_cost = publish_cost(
        servers, messages=plan.cost_messages, repeats=3 if plan.cross_checks else 1, folder=folder
    )
    if plan.cross_checks:
        results.doubled = _bursts(servers, plan, folder, processes=2 * plan.processes)
        results.wire = _bursts(servers, plan, folder, transport="wire")
    return results


def _bursts(
    servers: list[Server], plan: Plan, folder: Path, *, processes: int = 0, transport: str = "ws"
) -> dict[str, list[Burst]]:
    """Two interleaved rounds of bursts with other subscriber clients."""
    runs: dict[str, list[Burst]] = {s.name: [] for s in servers}
    with contextlib.ExitStack() as stack:
        subs = connect(
            stack,
            servers,
            connections=plan.connections,
            processes=processes or plan.processes,
            folder=folder,
            transport=transport,
        )
        for server in rounds(servers, 2):
            runs[server.name].append(burst(server, subs[server.name], plan.burst_messages, folder))
    return runs


def _spread(servers: list[Server]) -> str:
    """Client connections each worker of the two-worker relay holds."""
    for server in servers:
        if server.workers > 1:
            return "/".join(str(n) for n in server.connections())
    return ""


def run(*, quick: bool = False) -> list[Figure]:
    """Measure the local provider (one and two workers) and soketi, interleaved."""
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp, contextlib.ExitStack() as st:
        folder = Path(tmp)
        servers = [
            st.enter_context(relay_server(folder)),
            st.enter_context(relay_server(folder, workers=2)),
            st.enter_context(soketi_server(folder)),
        ]
        results = measure(servers, plan, folder)
    return _figures(results, plan)


def _schedule(delivered_per_second: float, plan: Plan) -> float:
    """Events per second for the latency run: half the one-worker relay's throughput."""
    return max(1.0, round(0.5 * delivered_per_second / plan.connections, 1))


def _evidence(results: Results, plan: Plan, name: str) -> list[str]:
    """What backs a rate figure: the sample, the CPU, the answers to the offer, the cross-checks."""
    notes = [
        f"median of {plan.bursts} interleaved bursts of {plan.burst_messages} events",
        cpu_note(name, results.bursts[name]),
        cpu_note(SOKETI, results.bursts[SOKETI]),
        f"permessage-deflate offered (ws client): {name} answered "
        f"{results.negotiated[name]}, soketi {results.negotiated[SOKETI]}",
    ]
    if name == WORKERS and results.spread:
        notes.append(f"connections per worker: {results.spread}")
    for label, runs in (
        (f"{2 * plan.processes} client processes instead of {plan.processes}", results.doubled),
        ("the light wire client (no extension offered)", results.wire),
    ):
        if runs:
            ratio = results.rate(name, runs) / results.rate(SOKETI, runs)
            notes.append(f"with {label}: {ratio:.2f}x soketi")
    notes += [
        f"{n} delivered {b.delivered:.1%}"
        for n in (name, SOKETI)
        for b in results.bursts[n]
        if b.delivered != 1
    ]
    return notes


def _figures(results: Results, plan: Plan) -> list[Figure]:
    subscribers = f"{plan.connections:,}"
    rate = results.paced_rate
    for name in (RELAY, WORKERS, SOKETI):
        plots.collect(LATENCY_GROUP, f"{name}, {rate:g} events/s", results.latency[name])
    paced_note = (
        f"{rate:g} events/s to {subscribers} subscribers (half the one-worker relay's "
        f"throughput), {results.latency[RELAY].total:,.0f} deliveries each, in two interleaved "
        "halves"
    )
    cost = {n: statistics.median(c) for n, c in results.publish_cost.items()}
    figures = []
    for name, label, target in ((RELAY, "one worker", ">= 0.8"), (WORKERS, "2 workers", ">= 1.0")):
        title = f"Local fan-out to {subscribers} subscribers, {label}"
        figures += [
            Figure(
                f"{title}: delivered messages/s",
                "msg/s",
                results.rate(name),
                results.rate(SOKETI),
                "soketi, same load client",
                target,
                "; ".join(_evidence(results, plan, name)),
            ),
            Figure(
                f"{title}: server CPU per 1,000 frames",
                "CPU-ms",
                cpu_per_frame_us(results.bursts[name]),
                cpu_per_frame_us(results.bursts[SOKETI]),
                "soketi",
                "",
                "CPU the server's processes spent per delivered frame; unlike the rate, not "
                "diluted by other load on the machine",
            ),
            Figure(
                f"{title}: end-to-end p50 latency",
                "ms",
                results.latency[name].percentile(50),
                results.latency[SOKETI].percentile(50),
                "soketi, same schedule",
                "",
                paced_note,
            ),
            Figure(
                f"{title}: end-to-end p99 latency",
                "ms",
                results.latency[name].percentile(99),
                results.latency[SOKETI].percentile(99),
                "soketi, same schedule",
                "<= 2.0" if name == RELAY else "",
                paced_note,
            ),
            Figure(
                f"Publish cost, {label}: server CPU per event to 2 subscribers",
                "CPU-us",
                cost[name],
                cost[SOKETI],
                "soketi",
                "",
                f"median of {len(results.publish_cost[name])} interleaved runs of "
                f"{plan.cost_messages} publishes (Pusher HTTP API, one at a time); what a publish "
                f"costs beside its frames: at {subscribers} subscribers, "
                f"{(cost[name] - cost[SOKETI]) / plan.connections:.1f} us per frame more than "
                "soketi",
            ),
        ]
    return figures


if __name__ == "__main__":
    import sys

    for figure in run(quick="--full" not in sys.argv):
        print(
            f"{figure.name}: {figure.value:.2f} vs {figure.baseline:.2f} {figure.unit} "
            f"= {figure.ratio:.2f}x (target {figure.target or '-'}) {figure.note}"
        )
