"""The servers the socket benchmarks compare: `relay serve` (one worker or several) and soketi.

Every relay started here gets an app id of its own: the Redis backplane's channels are named by
app id (and Redis pub/sub ignores the database), so two relays on one Redis with the same app id
would be one cluster, each delivering the other's publishes.

A server may be several processes (`relay serve --workers N` is a parent and N workers; soketi may
start helpers), so its CPU and resident memory are read from /proc for its whole process tree,
summed. The relay's workers share the Redis backplane and store, in a database of their own
(`BENCH_REDIS_URL`, default db 14) and under the benchmark's own app id.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench.nodeclients import APP_ID, KEY, SECRET
from tests.e2e.harness import free_port
from tests.e2e.soketi import SoketiProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


_app_ids = itertools.count(int(APP_ID))


def relay_env(*, workers: int = 1) -> dict[str, str]:
    """`relay serve` on the local provider with the benchmarks' app; several workers share Redis."""
    env = {
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
    if workers > 1:
        env |= {"RELAY_BACKPLANE": "redis", "RELAY_STORE": "redis", "RELAY_REDIS_URL": REDIS_URL}
    return env


def children(pid: int) -> list[int]:
    """Every process whose parent is `pid`, then theirs (from /proc/*/stat)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_vmrss(status: str) -> int:
    """VmRSS in bytes from the text of /proc/<pid>/status."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split(":", 1)[1].split()
            if unit != "kB":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value) * 1024
    raise ValueError("no VmRSS line (a kernel thread, or the process is gone)")


def rss_bytes(pid: int) -> int:
    """The resident set of one process."""
    return parse_vmrss(Path(f"/proc/{pid}/status").read_text())


def established_on(port: int) -> set[str]:
    """Socket inodes of the TCP connections established on a local port (/proc/net/tcp, tcp6)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # local address "ADDR:PORT" in hex; state 01 is ESTABLISHED
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets a process holds open."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    found.add(target[8:-1])
    return found


@dataclass(frozen=True, slots=True)
class Server:
    """A running server: its root process, HTTP origin (Pusher HTTP API) and WebSocket URL."""

    name: str
    pid: int
    base: str
    ws_url: str
    workers: int = 1
    app_id: str = APP_ID

    @property
    def sse_url(self) -> str:
        """The server-sent-events stream's URL (the relay's `GET /v1/stream`; soketi has none)."""
        return f"{self.base}/v1/stream"

    def pids(self) -> list[int]:
        """The root process and every descendant."""
        return [self.pid, *children(self.pid)]

    def cpu(self) -> float:
        """CPU seconds of the whole process tree."""
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += process_cpu_seconds(pid)
        return total

    def rss(self) -> int:
        """Resident bytes of the whole process tree, summed."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError):
                total += rss_bytes(pid)
        return total

    def connections(self) -> list[int]:
        """Client connections each process of the tree holds on the server's port, most first."""
        port = int(self.ws_url.split(":")[2].split("/")[0])
        established = established_on(port)
        counts = (len(socket_inodes(pid) & established) for pid in self.pids())
        return sorted((n for n in counts if n), reverse=True)


def _ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/app/{KEY}?protocol=7&client=bench&version=1"


@contextlib.contextmanager
def relay_server(
    folder: Path,
    *,
    workers: int = 1,
    source: Path | None = None,
    name: str = "",
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`relay serve` on the local provider; with `workers` > 1 on the Redis backplane.

    `source`: a copy of the code to run instead (first on PYTHONPATH), to measure a prototype
    interleaved with the code as it is; `env`: settings over the benchmark's own.
    """
    port = free_port()
    app_id = str(next(_app_ids))
    env = {**os.environ, **relay_env(workers=workers), "RELAY_APP_ID": app_id, **(env or {})}
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    env |= {"RELAY_HOST": "127.0.0.1", "RELAY_PORT": str(port)}
    command = [str(Path(sys.executable).with_name("relay")), "serve"]
    if workers > 1:
        command += ["--workers", str(workers)]
    name = name or ("relay" if workers == 1 else f"relay {workers} workers")
    log_path = folder / f"{name.replace(' ', '-')}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(process, base, log_path, workers)
            yield Server(name, process.pid, base, _ws_url(port), workers, app_id)
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(
    process: subprocess.Popen[bytes], base: str, log_path: Path, workers: int
) -> None:
    """Until /health answers (every worker, as far as a few answers in a row can tell)."""
    deadline = time.monotonic() + 30
    answered = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"relay exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            answered += httpx.get(base + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        # Workers start one after another: wait until every one runs, then let them settle.
        if answered >= 5 and len(_workers(process.pid)) >= (workers if workers > 1 else 0):
            if workers > 1:
                time.sleep(2)
            return
        time.sleep(0.1)
    raise RuntimeError(f"relay did not start: {log_path.read_text(errors='replace')[-2000:]}")


def _workers(pid: int) -> list[int]:
    """The worker processes `relay serve --workers` spawned (not multiprocessing's tracker)."""
    found = []
    for child in children(pid):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


@contextlib.contextmanager
def soketi_server(folder: Path) -> Iterator[Server]:
    """soketi with the same app."""
    soketi = SoketiProcess(app_id=APP_ID, key=KEY, secret=SECRET, log_path=folder / "soketi.log")
    try:
        assert soketi.process is not None
        yield Server("soketi", soketi.process.pid, soketi.base, _ws_url(soketi.port))
    finally:
        soketi.stop()
