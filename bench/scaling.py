"""The scaling curve: delivered messages/s for 100 to 10,000 subscribers, the relay against soketi.

The servers of the fan-out benchmark (`relay serve` with one worker and with two on the Redis
backplane, and soketi) run side by side for the whole curve; for each size every server gets that
many subscribers of one channel (`ws` clients offering permessage-deflate, 2 processes per server)
and the bursts take turns, the order rotating (bench/deliveries.py). A burst is about 200,000
frames (at most 200 events), so every size takes about as long. A size that fails on a server
(subscribers refused, frames lost) ends the curve there, and the figure says why.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bench import plots
from bench.deliveries import burst, connect, cpu_per_frame_us, rounds
from bench.figures import Figure
from bench.servers import relay_server, soketi_server

if TYPE_CHECKING:
    from bench.deliveries import Burst
    from bench.servers import Server

SIZES = (100, 1000, 3000, 10000)
QUICK_SIZES = (50, 200)
FRAMES_PER_BURST = 200_000
CURVE = "Fan-out: delivered messages/s by subscribers"
SOKETI = "soketi"


def events_for(subscribers: int, *, quick: bool = False) -> int:
    """Events per burst: about FRAMES_PER_BURST frames, between 10 and 200 events."""
    if quick:
        return 10
    return max(10, min(200, FRAMES_PER_BURST // subscribers))


def measure_size(
    servers: list[Server], subscribers: int, bursts: int, events: int, folder: Path
) -> dict[str, list[Burst]]:
    """Interleaved bursts to `subscribers` subscribers of every server."""
    runs: dict[str, list[Burst]] = {s.name: [] for s in servers}
    processes = 1 if subscribers < 500 else 2
    with contextlib.ExitStack() as stack:
        subs = connect(stack, servers, connections=subscribers, processes=processes, folder=folder)
        for server in rounds(servers, bursts):
            runs[server.name].append(burst(server, subs[server.name], events, folder))
    wrong = [f"{n} {b.delivered:.2%}" for n, rs in runs.items() for b in rs if b.delivered != 1]
    if wrong:
        raise RuntimeError(f"frames lost or repeated at {subscribers:,}: {', '.join(wrong)}")
    return runs


def run(*, quick: bool = False) -> list[Figure]:
    """The curve for every size the machine allows, plotted; one report-only figure per point."""
    sizes, bursts = (QUICK_SIZES, 1) if quick else (SIZES, 3)
    curve: dict[int, dict[str, list[Burst]]] = {}
    stopped = ""
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp, contextlib.ExitStack() as st:
        folder = Path(tmp)
        servers = [
            st.enter_context(relay_server(folder)),
            st.enter_context(relay_server(folder, workers=2)),
            st.enter_context(soketi_server(folder)),
        ]
        for size in sizes:
            try:
                curve[size] = measure_size(
                    servers, size, bursts, events_for(size, quick=quick), folder
                )
            except RuntimeError as exc:
                stopped = f"stopped before {size:,} subscribers: {exc}"
                break
    if not curve:
        raise RuntimeError(f"scaling: no size measured ({stopped})")
    names = list(next(iter(curve.values())))
    for name in names:
        points = [(size, _rate(runs[name])) for size, runs in curve.items()]
        plots.collect_curve(CURVE, name, points)
    return [
        Figure(
            f"Scaling: fan-out to {size:,} subscribers, {_label(name)}: delivered messages/s",
            "msg/s",
            _rate(runs[name]),
            _rate(runs[SOKETI]),
            "soketi, same load client",
            "",
            f"median of {bursts} interleaved bursts of {events_for(size, quick=quick)} events; "
            f"server CPU per frame {cpu_per_frame_us(runs[name]):.1f} us, soketi "
            f"{cpu_per_frame_us(runs[SOKETI]):.1f} us" + (f"; {stopped}" if stopped else ""),
        )
        for size, runs in curve.items()
        for name in names
        if name != SOKETI
    ]


def _rate(runs: list[Burst]) -> float:
    return statistics.median(b.rate for b in runs)


def _label(name: str) -> str:
    return "one worker" if name == "relay" else name.removeprefix("relay ")


if __name__ == "__main__":
    import sys

    for figure in run(quick="--full" not in sys.argv):
        print(
            f"{figure.name}: {figure.value:.2f} vs {figure.baseline:.2f} {figure.unit} "
            f"= {figure.ratio:.2f}x {figure.note}"
        )
