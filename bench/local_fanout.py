"""Fan-out: one channel, 1,000 WebSocket subscribers, the local provider against soketi.

The same Node load client runs against both servers (bench/clients): subscriber processes holding
the sockets, and a publisher that signs Pusher HTTP API calls, which both servers serve. Each event
carries the publisher's clock; each subscriber takes the latency on receipt.

- Throughput: a burst of events published back to back; delivered messages per second is every
  frame received divided by the time from the first publish to the last receipt.
- Latency: events on a fixed schedule at half of the local provider's measured throughput (the
  same schedule for soketi), so the figure is delivery latency, not the queue of a burst.
- Whether the load client is the limit: the CPU each party spends per frame (from /proc, which
  other load on the machine does not dilute), and the bursts repeated with twice the subscriber
  processes (same sockets in total).
The two servers run side by side and take turns, so a change in the machine's load hits both.
This module also holds the Node process helpers that the memory and auth benchmarks share.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import plots
from bench.figures import Figure
from bench.plots import Histogram
from tests.e2e.harness import ROOT, RelayProcess
from tests.e2e.soketi import SoketiProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

CLIENTS = Path(__file__).resolve().parent / "clients"
APP_ID, KEY, SECRET = "5152", "bench-key", "bench-secret-0123456789abcdef"
CHANNEL = "fanout"
LATENCY_GROUP = "Local fan-out: end-to-end latency, 1,000 subscribers, paced"
Message = dict[str, Any]


def relay_env() -> dict[str, str]:
    """`relay serve` on the local provider with this benchmark's app credentials."""
    return {
        "RELAY_ENV": "test",
        "RELAY_PROVIDER": "local",
        "RELAY_LOG_LEVEL": "WARNING",
        "RELAY_APP_ID": APP_ID,
        "RELAY_APP_KEY": KEY,
        "RELAY_APP_SECRET": SECRET,
        "RELAY_JWT_SECRET": "bench-jwt-secret-0123456789abcdef0123456789",
        "RELAY_API_KEYS": "bench-api-key-0123456789",
        # One publisher, back to back: the limiter runs but must not throttle the benchmark.
        "RELAY_RATE_PUBLISH_PER_SECOND": "1000000",
        "RELAY_RATE_PUBLISH_BURST": "1000000",
        # Socket subscriptions count against the auth rate, which every subscriber (one
        # anonymous address, 127.0.0.1) would share.
        "RELAY_RATE_AUTH_PER_SECOND": "1000000",
        "RELAY_RATE_AUTH_BURST": "1000000",
        # Every subscriber connects from 127.0.0.1: the per-address cap (200) would refuse most.
        "RELAY_MAX_CONNECTIONS_PER_IP": "100000",
        "RELAY_MAX_CONNECTIONS": "100000",
    }


def node() -> str:
    """The node executable."""
    found = shutil.which("node")
    if found is None:
        raise RuntimeError("node is not installed: install Node.js 20")
    return found


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class NodeProcess:
    """A bench/clients script in Node, speaking JSON lines on stdin and stdout."""

    def __init__(self, script: str, options: dict[str, Any], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [node(), str(CLIENTS / script), json.dumps(options)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self._inbox: queue.Queue[Message | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                self._inbox.put(json.loads(line))
        self._inbox.put(None)

    def expect(self, kind: str, timeout: float) -> Message:
        """The next message of type `kind`; fail on an error, an exit or the timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self._inbox.get(timeout=left)
            except queue.Empty:
                break
            if message is None:
                raise RuntimeError(f"{self.log_path.stem} exited: {self._stderr()}")
            if message.get("type") == "error":
                raise RuntimeError(f"{self.log_path.stem}: {message.get('error')}")
            if message.get("type") == kind:
                return message
        raise RuntimeError(f"{self.log_path.stem}: no {kind!r} within {timeout} s")

    def send(self, **command: Any) -> None:
        """Send one command line."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def _stderr(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def close(self) -> None:
        """Ask it to close, then make sure it is gone, its pipes closed and its reader ended."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.send(op="close")
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._log.close()


@dataclass(frozen=True, slots=True)
class Report:
    """What every subscriber process has received since the last reset."""

    count: int
    first: float  # ms, publisher clock domain (wall clock)
    last: float
    histogram: Histogram
    closed: int
    cpu: float  # seconds, summed over the subscriber processes


class Subscribers:
    """`connections` subscriber sockets spread over `processes` Node processes."""

    def __init__(
        self,
        *,
        ws_url: str,
        connections: int,
        processes: int,
        folder: Path,
        channel: str = CHANNEL,
        own_channels: bool = False,
        transport: str = "wire",
        timeout: float = 60,
    ) -> None:
        self.connections = connections
        self.clients: list[NodeProcess] = []
        try:
            offset = 0
            for n in range(processes):
                share = connections // processes + (1 if n < connections % processes else 0)
                options = {
                    "url": ws_url,
                    "connections": share,
                    "channel": channel,
                    "ownChannels": own_channels,
                    "offset": offset,
                    "concurrency": 50,
                    "transport": transport,
                }
                offset += share
                self.clients.append(NodeProcess("subscribers.mjs", options, folder / f"sub{n}.log"))
            for client in self.clients:
                client.expect("ready", timeout)
        except BaseException:
            self.close()
            raise

    def report(self) -> Report:
        """Ask every process and add the answers up."""
        for client in self.clients:
            client.send(op="report")
        answers = [client.expect("report", 10) for client in self.clients]
        firsts = [a["first"] for a in answers if a["count"]]
        histogram = Histogram()
        for a in answers:
            histogram = histogram.merge(Histogram.from_pairs(a["hist"]))
        return Report(
            count=sum(a["count"] for a in answers),
            first=min(firsts) if firsts else 0.0,
            last=max(a["last"] for a in answers),
            histogram=histogram,
            closed=sum(a["closed"] for a in answers),
            cpu=sum(a["cpu"] for a in answers),
        )

    def reset(self) -> None:
        """Zero the counters."""
        for client in self.clients:
            client.send(op="reset")
        self.report()  # a round trip, so that every reset is done before anything else

    def wait_for(self, expected: int, *, stall: float = 5.0, limit: float = 120.0) -> Report:
        """Poll until `expected` frames arrived, or nothing arrived for `stall` seconds."""
        started = time.monotonic()
        last_count, last_progress = -1, time.monotonic()
        while True:
            report = self.report()
            now = time.monotonic()
            if report.count >= expected:
                return report
            if report.count != last_count:
                last_count, last_progress = report.count, now
            elif now - last_progress > stall or now - started > limit:
                return report
            time.sleep(0.1)

    def close(self) -> None:
        """Stop every process."""
        for client in self.clients:
            client.close()


def publish(
    base: str, *, messages: int, rate: float, folder: Path, channel: str = CHANNEL
) -> Message:
    """Run the Node publisher to the end (rate 0: back to back)."""
    options = {
        "base": base,
        "appId": APP_ID,
        "key": KEY,
        "secret": SECRET,
        "channel": channel,
        "messages": messages,
        "rate": rate,
        "concurrency": 1,
    }
    publisher = NodeProcess("publisher.mjs", options, folder / "publisher.log")
    try:
        done = publisher.expect("done", 60 + (messages / rate if rate else 0))
    finally:
        publisher.close()
    if done["errors"]:
        raise RuntimeError(f"publisher: {done['errors']} of {messages} publishes failed")
    return done


@dataclass(frozen=True, slots=True)
class Server:
    """A running server: its process, HTTP origin (Pusher HTTP API) and WebSocket URL."""

    name: str
    pid: int
    base: str
    ws_url: str


@dataclass(frozen=True, slots=True)
class Burst:
    """One burst: delivered rate and the CPU each party spent on it."""

    rate: float  # frames delivered per second
    frames: int
    delivered: float  # fraction of the expected frames that arrived
    wall: float  # seconds from starting the publisher to the last frame
    server_cpu: float  # CPU seconds
    client_cpu: float  # CPU seconds, subscriber processes together
    publisher_cpu: float

    def per_frame_us(self, cpu: float) -> float:
        """CPU microseconds per delivered frame."""
        return cpu / max(1, self.frames) * 1e6


def burst(server: Server, subs: Subscribers, messages: int, folder: Path) -> Burst:
    """Publish `messages` back to back; measure the rate at which every frame arrives."""
    subs.reset()
    before = subs.report()
    cpu0, wall0 = process_cpu_seconds(server.pid), time.monotonic()
    sent = publish(server.base, messages=messages, rate=0, folder=folder)
    expected = messages * subs.connections
    report = subs.wait_for(expected)
    wall = time.monotonic() - wall0
    server_cpu = process_cpu_seconds(server.pid) - cpu0
    elapsed = (report.last - sent["first"]) / 1000
    return Burst(
        rate=report.count / elapsed if elapsed > 0 else 0.0,
        frames=report.count,
        delivered=report.count / expected,
        wall=wall,
        server_cpu=server_cpu,
        client_cpu=report.cpu - before.cpu,
        publisher_cpu=sent["cpu"],
    )


def paced(server: Server, subs: Subscribers, messages: int, rate: float, folder: Path) -> Report:
    """Publish on a schedule; every frame's latency."""
    subs.reset()
    publish(server.base, messages=messages, rate=rate, folder=folder)
    return subs.wait_for(messages * subs.connections)


@dataclass(frozen=True, slots=True)
class Plan:
    """Sample sizes."""

    connections: int
    processes: int
    burst_messages: int
    bursts: int
    paced_seconds: float
    double: bool


@dataclass(slots=True)
class Results:
    """Everything measured, per server name."""

    bursts: dict[str, list[Burst]]
    doubled: dict[str, list[Burst]]
    latency: dict[str, Report]
    paced_rate: float

    def rate(self, name: str, *, doubled: bool = False) -> float:
        """Median delivered rate."""
        runs = (self.doubled if doubled else self.bursts)[name]
        return statistics.median(b.rate for b in runs)


def _connect_all(
    stack: contextlib.ExitStack, servers: list[Server], plan: Plan, processes: int, folder: Path
) -> dict[str, Subscribers]:
    subs: dict[str, Subscribers] = {}
    for server in servers:
        subs[server.name] = Subscribers(
            ws_url=server.ws_url,
            connections=plan.connections,
            processes=processes,
            folder=folder,
        )
        stack.callback(subs[server.name].close)
        publish(server.base, messages=5, rate=0, folder=folder)  # warm both ends up
        subs[server.name].wait_for(5 * plan.connections)
    return subs


def _rounds(servers: list[Server], rounds: int) -> Iterator[Server]:
    """Alternate which server goes first, so a change in the machine's load hits both alike."""
    for n in range(rounds):
        yield from (servers if n % 2 == 0 else servers[::-1])


def measure(servers: list[Server], plan: Plan, folder: Path) -> Results:
    """Interleaved bursts, the paced latency runs, then the doubled-client bursts."""
    results = Results({s.name: [] for s in servers}, {s.name: [] for s in servers}, {}, 0.0)
    with contextlib.ExitStack() as stack:
        subs = _connect_all(stack, servers, plan, plan.processes, folder)
        for server in _rounds(servers, plan.bursts):
            results.bursts[server.name].append(
                burst(server, subs[server.name], plan.burst_messages, folder)
            )
        results.paced_rate = _schedule(results.rate(servers[0].name), plan)
        count = max(10, round(results.paced_rate * plan.paced_seconds))
        for server in servers:
            results.latency[server.name] = paced(
                server, subs[server.name], count, results.paced_rate, folder
            )
    if plan.double:
        with contextlib.ExitStack() as stack:
            subs = _connect_all(stack, servers, plan, 2 * plan.processes, folder)
            for server in _rounds(servers, 2):
                results.doubled[server.name].append(
                    burst(server, subs[server.name], plan.burst_messages, folder)
                )
    return results


@contextlib.contextmanager
def relay_server(folder: Path) -> Iterator[Server]:
    """`relay serve` on the local provider."""
    relay = RelayProcess(relay_env(), folder / "relay.log")
    try:
        ws = f"ws://127.0.0.1:{relay.port}/app/{KEY}?protocol=7&client=bench&version=1"
        yield Server("relay", relay.process.pid, relay.base, ws)
    finally:
        relay.stop()


@contextlib.contextmanager
def soketi_server(folder: Path) -> Iterator[Server]:
    """soketi with the same app."""
    soketi = SoketiProcess(app_id=APP_ID, key=KEY, secret=SECRET, log_path=folder / "soketi.log")
    try:
        assert soketi.process is not None
        ws = f"ws://127.0.0.1:{soketi.port}/app/{KEY}?protocol=7&client=bench&version=1"
        yield Server("soketi", soketi.process.pid, soketi.base, ws)
    finally:
        soketi.stop()


def run(*, quick: bool = False) -> list[Figure]:
    """Measure the local provider and soketi, interleaved, with the same load client."""
    if quick:
        plan = Plan(
            connections=100, processes=1, burst_messages=20, bursts=2, paced_seconds=1, double=False
        )
    else:
        plan = Plan(
            connections=1000,
            processes=2,
            burst_messages=200,
            bursts=4,
            paced_seconds=10,
            double=True,
        )
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp, contextlib.ExitStack() as st:
        folder = Path(tmp)
        servers = [st.enter_context(relay_server(folder)), st.enter_context(soketi_server(folder))]
        results = measure(servers, plan, folder)
    return _figures(results, plan)


def _schedule(delivered_per_second: float, plan: Plan) -> float:
    """Events per second for the latency run: half the local provider's measured throughput."""
    return max(1.0, round(0.5 * delivered_per_second / plan.connections, 1))


def _cpu_note(results: Results, name: str) -> str:
    runs = results.bursts[name]
    frames = sum(b.frames for b in runs)
    wall = sum(b.wall for b in runs)
    server = sum(b.server_cpu for b in runs)
    client = sum(b.client_cpu for b in runs)
    return (
        f"{name}: server {server / frames * 1e6:.1f} and clients {client / frames * 1e6:.1f} "
        f"CPU-us per frame (server {server / wall:.0%}, clients {client / wall:.0%} of a core)"
    )


def _figures(results: Results, plan: Plan) -> list[Figure]:
    r_rate, s_rate = results.rate("relay"), results.rate("soketi")
    subscribers = f"{plan.connections:,}"
    evidence = [
        f"median of {plan.bursts} interleaved bursts of {plan.burst_messages} events",
        _cpu_note(results, "relay"),
        _cpu_note(results, "soketi"),
    ]
    if results.doubled["relay"]:
        evidence.append(
            f"with {2 * plan.processes} client processes instead of {plan.processes}: relay "
            f"{results.rate('relay', doubled=True) / r_rate:.2f}x, soketi "
            f"{results.rate('soketi', doubled=True) / s_rate:.2f}x its rate"
        )
    evidence += [
        f"{name} delivered {b.delivered:.1%}"
        for name, runs in results.bursts.items()
        for b in runs
        if b.delivered < 1
    ]
    r_lat, s_lat = results.latency["relay"].histogram, results.latency["soketi"].histogram
    rate = results.paced_rate
    plots.collect(LATENCY_GROUP, f"relay local provider, {rate:g} events/s", r_lat)
    plots.collect(LATENCY_GROUP, f"soketi, {rate:g} events/s", s_lat)
    paced_note = (
        f"{rate:g} events/s to {subscribers} subscribers (half the relay's throughput), "
        f"{r_lat.total:,.0f} deliveries each"
    )

    def cpu_per_kframe(name: str) -> float:
        runs = results.bursts[name]
        return sum(b.server_cpu for b in runs) / sum(b.frames for b in runs) * 1e6

    return [
        Figure(
            f"Local fan-out to {subscribers} subscribers: delivered messages/s",
            "msg/s",
            r_rate,
            s_rate,
            "soketi, same load client",
            ">= 0.7",
            "; ".join(evidence),
        ),
        Figure(
            f"Local fan-out to {subscribers} subscribers: server CPU per 1,000 frames",
            "CPU-ms",
            cpu_per_kframe("relay"),
            cpu_per_kframe("soketi"),
            "soketi",
            "",
            "CPU the server process spent per delivered frame; unlike the rate, not diluted by "
            "other load on the machine",
        ),
        Figure(
            f"Local fan-out to {subscribers} subscribers: end-to-end p50 latency",
            "ms",
            r_lat.percentile(50),
            s_lat.percentile(50),
            "soketi, same schedule",
            "",
            paced_note,
        ),
        Figure(
            f"Local fan-out to {subscribers} subscribers: end-to-end p99 latency",
            "ms",
            r_lat.percentile(99),
            s_lat.percentile(99),
            "soketi, same schedule",
            "",
            paced_note,
        ),
    ]


if __name__ == "__main__":
    import sys

    for figure in run(quick="--full" not in sys.argv):
        print(
            f"{figure.name}: {figure.value:.2f} vs {figure.baseline:.2f} {figure.unit} "
            f"= {figure.ratio:.2f}x (target {figure.target or '-'}) {figure.note}"
        )
