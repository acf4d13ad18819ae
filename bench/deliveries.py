"""Bursts and paced runs of events to a server's subscribers, the fan-out benchmarks' two measures.

- A burst: events published back to back; delivered messages per second is every frame received
  divided by the time from the first publish to the last receipt.
- A paced run: events on a fixed schedule, so the latency is delivery latency, not a burst's queue.
- The cost of a publish: server CPU per event with two subscribers, what a publish costs beside
  the frames it fans out to.
Both read the CPU the server's process tree and the subscriber processes spent, from /proc, which
other load on the machine does not dilute.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.nodeclients import Report, Subscribers, publish

COST_CHANNEL = "publish-cost"

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from bench.servers import Server


@dataclass(frozen=True, slots=True)
class Burst:
    """One burst: delivered rate and the CPU each party spent on it."""

    rate: float  # frames delivered per second
    frames: int
    delivered: float  # frames that arrived / frames expected (above 1: duplicates)
    wall: float  # seconds from starting the publisher to the last frame
    server_cpu: float  # CPU seconds, the server's processes together
    client_cpu: float  # CPU seconds, subscriber processes together
    publisher_cpu: float


def burst(server: Server, subs: Subscribers, messages: int, folder: Path) -> Burst:
    """Publish `messages` back to back; measure the rate at which every frame arrives."""
    subs.reset()
    before = subs.report()
    cpu0, wall0 = server.cpu(), time.monotonic()
    sent = publish(server.base, app_id=server.app_id, messages=messages, rate=0, folder=folder)
    expected = messages * subs.connections
    report = subs.wait_for(expected)
    wall = time.monotonic() - wall0
    server_cpu = server.cpu() - cpu0
    elapsed = (report.last - sent["first"]) / 1000
    time.sleep(0.2)  # frames past the expected count would be duplicates: count them too
    late = subs.report().count
    return Burst(
        rate=min(report.count, expected) / elapsed if elapsed > 0 else 0.0,
        frames=report.count,
        delivered=late / expected,
        wall=wall,
        server_cpu=server_cpu,
        client_cpu=report.cpu - before.cpu,
        publisher_cpu=sent["cpu"],
    )


def paced(server: Server, subs: Subscribers, messages: int, rate: float, folder: Path) -> Report:
    """Publish on a schedule; every frame's latency."""
    subs.reset()
    publish(server.base, app_id=server.app_id, messages=messages, rate=rate, folder=folder)
    return subs.wait_for(messages * subs.connections)


def publish_cost(
    servers: Sequence[Server], *, messages: int, repeats: int, folder: Path
) -> dict[str, list[float]]:
    """Server CPU microseconds per publish to a channel of two subscribers, interleaved."""
    costs: dict[str, list[float]] = {s.name: [] for s in servers}
    with contextlib.ExitStack() as stack:
        subs = {
            s.name: stack.enter_context(
                contextlib.closing(
                    Subscribers(
                        ws_url=s.ws_url,
                        connections=2,
                        processes=1,
                        folder=folder,
                        channel=COST_CHANNEL,
                    )
                )
            )
            for s in servers
        }
        for server in rounds(servers, repeats):
            subs[server.name].reset()
            cpu0 = server.cpu()
            publish(
                server.base,
                app_id=server.app_id,
                messages=messages,
                rate=0,
                folder=folder,
                channel=COST_CHANNEL,
            )
            subs[server.name].wait_for(2 * messages)
            costs[server.name].append((server.cpu() - cpu0) / messages * 1e6)
    return costs


def rounds(servers: Sequence[Server], count: int) -> Iterator[Server]:
    """Each server once per round, the order rotating, so the machine's load hits all alike."""
    for n in range(count):
        k = n % len(servers)
        yield from (*servers[k:], *servers[:k])


def connect(
    stack: contextlib.ExitStack,
    servers: Sequence[Server],
    *,
    connections: int,
    processes: int,
    folder: Path,
    transport: str = "ws",
) -> dict[str, Subscribers]:
    """Subscribers of one channel on every server, warmed up (a few events delivered);
    `transport` "sse": server-sent-event streams instead of sockets."""
    subs: dict[str, Subscribers] = {}
    for server in servers:
        subs[server.name] = stack.enter_context(
            contextlib.closing(
                Subscribers(
                    ws_url=server.sse_url if transport == "sse" else server.ws_url,
                    connections=connections,
                    processes=processes,
                    folder=folder,
                    transport=transport,
                )
            )
        )
        publish(server.base, app_id=server.app_id, messages=5, rate=0, folder=folder)
        subs[server.name].wait_for(5 * connections)
    return subs


def cpu_per_frame_us(runs: Sequence[Burst], *, client: bool = False) -> float:
    """CPU microseconds per delivered frame over several bursts (the server's, or the clients')."""
    frames = sum(b.frames for b in runs)
    cpu = sum(b.client_cpu if client else b.server_cpu for b in runs)
    return cpu / max(1, frames) * 1e6


def cpu_note(name: str, runs: Sequence[Burst]) -> str:
    """The CPU each party spent per frame, and how busy it was."""
    wall = sum(b.wall for b in runs)
    server = sum(b.server_cpu for b in runs)
    client = sum(b.client_cpu for b in runs)
    return (
        f"{name}: server {cpu_per_frame_us(runs):.1f} and clients "
        f"{cpu_per_frame_us(runs, client=True):.1f} CPU-us per frame (server {server / wall:.0%}, "
        f"clients {client / wall:.0%} of a core)"
    )
