"""The Node load clients of bench/clients, driven from Python: subscribers and the publisher.

Each client is a Node process speaking JSON lines on stdin and stdout (bench/clients/*.mjs); the
Python side only starts them, sends commands and reads answers, so the measuring stays out of the
measured servers' way. Subscribers offer permessage-deflate as browsers do (the `ws` package) unless
asked for the light wire client, and say what each server answered to the offer.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.plots import Histogram
from tests.e2e.harness import ROOT

CLIENTS = Path(__file__).resolve().parent / "clients"
APP_ID, KEY, SECRET = "5152", "bench-key", "bench-secret-0123456789abcdef"
CHANNEL = "fanout"
Message = dict[str, Any]


def node() -> str:
    """The node executable."""
    found = shutil.which("node")
    if found is None:
        raise RuntimeError("node is not installed: install Node.js 20")
    return found


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
    """`connections` subscriber sockets spread over `processes` Node processes.

    `transport`: "ws" (the `ws` package, offering permessage-deflate as browsers do), "wire"
    (the light client, no extension offered) or "sse" (server-sent-event streams read as
    EventSource reads them, bench/clients/sse.mjs; `ws_url` is then the stream's URL, e.g.
    `Server.sse_url`). `extensions` counts the server's answers to the offer (its
    Sec-WebSocket-Extensions header; "" when it negotiated nothing, and for every SSE stream).
    """

    def __init__(
        self,
        *,
        ws_url: str,
        connections: int,
        processes: int,
        folder: Path,
        channel: str = CHANNEL,
        own_channels: bool = False,
        transport: str = "ws",
        timeout: float | None = None,
    ) -> None:
        self.connections = connections
        self.transport = transport
        self.extensions: Counter[str] = Counter()
        self.clients: list[NodeProcess] = []
        script = "sse.mjs" if transport == "sse" else "subscribers.mjs"
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
                log = folder / f"sub{n}-{transport}.log"
                self.clients.append(NodeProcess(script, options, log))
            for client in self.clients:
                ready = client.expect("ready", timeout or 30 + connections / 200)
                self.extensions.update(ready.get("extensions", {}))
        except BaseException:
            self.close()
            raise

    def negotiated(self) -> str:
        """What the server answered to the offer, e.g. `none (1,000 sockets)`."""
        parts = [
            f"{answer or 'none'} ({count:,} sockets)"
            for answer, count in sorted(self.extensions.items())
        ]
        return ", ".join(parts) or "no sockets"

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
    base: str,
    *,
    messages: int,
    rate: float,
    folder: Path,
    channel: str = CHANNEL,
    concurrency: int = 1,
    app_id: str = APP_ID,
) -> Message:
    """Run the Node publisher to the end (rate 0: back to back, `concurrency` in flight)."""
    options = {
        "base": base,
        "appId": app_id,
        "key": KEY,
        "secret": SECRET,
        "channel": channel,
        "messages": messages,
        "rate": rate,
        "concurrency": concurrency,
    }
    publisher = NodeProcess("publisher.mjs", options, folder / "publisher.log")
    try:
        done = publisher.expect("done", 60 + (messages / rate if rate else 0))
    finally:
        publisher.close()
    if done["errors"]:
        raise RuntimeError(f"publisher: {done['errors']} of {messages} publishes failed")
    return done
