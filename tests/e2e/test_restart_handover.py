"""A restart on one port (issue 12, finding 12): the old `relay serve` gets SIGTERM, a new one
starts, and pusher-js and EventSource clients move over while publishes keep coming.

Observed before: 4200 went out while the old process still accepted, so pusher-js reconnected
into it, was cut again with 1012 and then waited 10-15 s; publishes answered 200 in that window
reached no one; SSE streams stayed on the old process, which waited for them, and their clients
silently stopped receiving. Checked here: every client is back on the new process within 3 s of
it answering, and every publish answered 2xx reached every client whose subscription spanned the
request (client-side times: a subscription starts when the client saw it confirmed and ends when
it saw the connection go).
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e import harness
from tests.e2e.conftest import API_KEY, APP_KEY, RELAY_ENV
from tests.e2e.harness import PusherAgent, RelayProcess

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

CHANNEL = "handover"
BACK_WITHIN = 3.0
# Half of it, the longest the old process waits for the new one to listen, covers a slow start.
DRAIN_SECONDS = 20
# The old process is gone this soon after the new one answers (it hands over when it listens).
EXIT_WITHIN = 3.0
ENV = {**RELAY_ENV, "RELAY_DRAIN_SECONDS": str(DRAIN_SECONDS), "RELAY_RATE_LIMITS": "false"}


class TimedAgent(PusherAgent):
    """pusher-js clients whose every observation is kept with the time it arrived."""

    def __init__(self, relay: RelayProcess, app_key: str) -> None:
        self.timeline: list[tuple[float, dict[str, Any]]] = []
        super().__init__(relay, app_key)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            observation = json.loads(line)
            self.timeline.append((time.monotonic(), observation))
            self._inbox.put(observation)

    def intervals(self, client: str) -> list[tuple[float, float]]:
        """When the client was subscribed to CHANNEL: from confirmed to connection gone."""
        spans: list[tuple[float, float]] = []
        start: float | None = None
        for at, o in list(self.timeline):
            if o.get("client") != client:
                continue
            if o["type"] == "subscribed" and o["channel"] == CHANNEL and start is None:
                start = at
            elif o["type"] == "state" and o["state"] != "connected" and start is not None:
                spans.append((start, at))
                start = None
        if start is not None:
            spans.append((start, float("inf")))
        return spans

    def received(self, client: str) -> set[int]:
        """The sequence numbers the client received on CHANNEL."""
        return {
            int(o["data"]["seq"])
            for _, o in list(self.timeline)
            if o.get("client") == client and o["type"] == "event" and o["channel"] == CHANNEL
        }


@dataclass
class EventSourceClient:
    """What a browser's EventSource does: reconnect after `retry:` ms, with Last-Event-ID."""

    base: str
    spans: list[tuple[float, float]] = field(default_factory=list)  # connected, then ended
    connected_at: float | None = None  # the open stream's start
    received: set[int] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def starts(self) -> list[tuple[float, float]]:
        """Every span, the open one included."""
        now = self.connected_at
        return self.spans + ([] if now is None else [(now, float("inf"))])

    def run(self) -> None:
        """Stay connected until stopped."""
        retry = 3.0
        last_id: str | None = None
        while not self.stop.is_set():
            headers = {} if last_id is None else {"Last-Event-ID": last_id}
            try:
                with httpx.stream(
                    "GET",
                    self.base + "/v1/stream",
                    params={"channel": CHANNEL},
                    headers=headers,
                    timeout=httpx.Timeout(5, read=3),
                ) as response:
                    for line in response.iter_lines() if response.status_code == 200 else ():
                        if self.stop.is_set():
                            break
                        name, _, value = line.partition(": ")
                        if name == "retry":
                            retry = int(value) / 1000
                        elif name == "id":
                            last_id = value
                        elif name == "data":
                            frame = json.loads(value)
                            if frame["type"] == "connected":
                                self.connected_at = time.monotonic()
                            elif frame["type"] == "event":
                                self.received.add(int(frame["data"]["seq"]))
            except httpx.HTTPError:
                pass
            if self.connected_at is not None:
                self.spans.append((self.connected_at, time.monotonic()))
                self.connected_at = None
            self.stop.wait(retry)


@dataclass
class Publisher:
    """POST /v1/events every 50 ms over a kept-alive connection; every answer is kept."""

    base: str
    answers: list[tuple[int, float, float, int]] = field(default_factory=list)  # seq, sent, ..
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Publish until stopped."""
        with httpx.Client(base_url=self.base, timeout=2) as client:
            seq = 0
            while not self.stop.is_set():
                seq += 1
                sent = time.monotonic()
                try:
                    status = client.post(
                        "/v1/events",
                        json={"name": "tick", "channel": CHANNEL, "data": {"seq": seq}},
                        headers={"X-API-Key": API_KEY},
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                self.answers.append((seq, sent, time.monotonic(), status))
                self.stop.wait(0.05)


def _exit_time(relay: RelayProcess) -> float:
    relay.process.wait()
    return time.monotonic()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _settled_since(
    spans: list[tuple[float, float]], moment: float, until: float = float("inf")
) -> float:
    """When the client's last subscription began, if it began after `moment` and lasted to
    `until` (the end of the test)."""
    if not spans or spans[-1][0] <= moment or spans[-1][1] < until:
        return float("inf")
    return spans[-1][0]


def _missed(
    answers: list[tuple[int, float, float, int]],
    spans: list[tuple[float, float]],
    received: set[int],
) -> list[int]:
    """2xx publishes sent and answered inside one of the spans that the client did not get."""
    return [
        seq
        for seq, sent, answered, status in answers
        if 200 <= status < 300
        and any(start <= sent and answered <= end for start, end in spans)
        and seq not in received
    ]


def test_clients_move_to_the_new_process_and_no_accepted_publish_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = harness.free_port()
    monkeypatch.setattr(harness, "free_port", lambda: port)  # both processes on one port
    old = RelayProcess(ENV, tmp_path / "old.log")
    new: RelayProcess | None = None
    agent = TimedAgent(old, APP_KEY)
    sse = EventSourceClient(old.base)
    publisher = Publisher(old.base)
    threads = [threading.Thread(target=w.run, daemon=True) for w in (sse, publisher)]
    try:
        for client in ("a", "b"):
            agent.connect(client)
            assert agent.subscribe(client, CHANNEL)["type"] == "subscribed"
        threads[0].start()
        deadline = time.monotonic() + 10
        while sse.connected_at is None:
            assert time.monotonic() < deadline, "the EventSource client never connected"
            time.sleep(0.05)
        threads[1].start()
        time.sleep(1.0)

        terminated = time.monotonic()
        old.process.send_signal(signal.SIGTERM)
        exits: list[float] = []
        watcher = threading.Thread(target=lambda: exits.append(_exit_time(old)), daemon=True)
        watcher.start()
        while _listening(port):  # the old process stops accepting first
            assert time.monotonic() - terminated < 2, "the old process still accepts"
            time.sleep(0.01)
        new = RelayProcess(ENV, tmp_path / "new.log")
        ready = time.monotonic()

        deadline = ready + BACK_WITHIN + 2
        while time.monotonic() < deadline:
            back = [_settled_since(agent.intervals(c), terminated) for c in ("a", "b")]
            back.append(_settled_since(sse.starts(), terminated))
            if max(back) < float("inf"):
                break
            time.sleep(0.05)
        time.sleep(1.0)  # publishes reach the clients on the new process
        assert old.process.wait(DRAIN_SECONDS + 3) in (0, -signal.SIGTERM)
        watcher.join(1)
        publisher.stop.set()
        time.sleep(0.5)  # the last accepted publishes arrive before the clients stop
        stopped = time.monotonic()
    finally:
        publisher.stop.set()
        sse.stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(10)
        agent.close()
        old.stop()
        if new is not None:
            new.stop()

    for client in ("a", "b"):
        # The old process hands over as soon as the new one listens, before it answers /health.
        returned = _settled_since(agent.intervals(client), terminated, stopped) - ready
        assert returned <= BACK_WITHIN, f"pusher-js {client} back after {returned:.1f} s"
    sse_back = _settled_since(sse.spans, terminated, stopped) - ready
    assert sse_back <= BACK_WITHIN, f"EventSource back after {sse_back:.1f} s"
    accepted = [a for a in publisher.answers if 200 <= a[3] < 300]
    assert accepted, "nothing was published"
    for client in ("a", "b"):
        missed = _missed(publisher.answers, agent.intervals(client), agent.received(client))
        assert missed == [], f"pusher-js {client} missed accepted publishes {missed}"
    assert _missed(publisher.answers, sse.spans, sse.received) == []
    assert exits[0] - ready < EXIT_WITHIN, f"the old process exited {exits[0] - ready:.1f} s late"
