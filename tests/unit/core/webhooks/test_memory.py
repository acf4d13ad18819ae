"""The in-memory queue: batching, the member_removed hold and its cancellation, order, bounds."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from core.provider import ChannelEvent
from core.webhooks.delivery import Sender
from core.webhooks.memory import MemorySink
from core.webhooks.sink import emit, install, installed, uninstall
from tests.unit.core.webhooks.conftest import config, sign

if TYPE_CHECKING:
    from tests.unit.core.webhooks.receiver import Receiver


def ev(kind: str, channel: str = "presence-room", user: str | None = None) -> ChannelEvent:
    return ChannelEvent(kind, channel, int(time.time() * 1000), user_id=user)


async def test_events_queued_together_go_in_one_batch(receiver: tuple[Receiver, str]) -> None:
    backend, url = receiver
    sink = MemorySink(config(url), Sender(config(url), sign))
    sink.put([ev("channel_occupied"), ev("member_added", user="ann")])
    await sink.start()
    await backend.wait_for(2)
    await sink.aclose()
    assert len(backend.bodies) == 1
    assert backend.kinds() == [
        ("channel_occupied", "presence-room", None),
        ("member_added", "presence-room", "ann"),
    ]


async def test_a_rejoin_inside_the_hold_sends_no_member_removed(
    receiver: tuple[Receiver, str],
) -> None:
    backend, url = receiver
    cfg = config(url, hold_seconds=0.5)
    sink = MemorySink(cfg, Sender(cfg, sign))
    await sink.start()
    sink.put([ev("member_removed", user="ann"), ev("member_added", user="ann")])
    sink.put([ev("member_removed", user="bob")])
    sink.put([ev("client_event", "private-other")])
    await backend.wait_for(1)
    assert backend.kinds() == [("client_event", "private-other", None)]  # not held
    await backend.wait_for(2, within=3)
    await sink.aclose()
    assert backend.kinds()[1] == ("member_removed", "presence-room", "bob")
    assert len(backend.events) == 2


async def test_a_failing_batch_holds_back_the_next_one(receiver: tuple[Receiver, str]) -> None:
    backend, url = receiver
    backend.failures = [500]
    sink = MemorySink(config(url), Sender(config(url), sign))
    await sink.start()
    sink.put([ev("client_event", "private-a", "1")])
    await asyncio.sleep(0)
    sink.put([ev("client_event", "private-a", "2")])
    await backend.wait_for(2)
    await sink.aclose()
    assert [e["user_id"] for e in backend.events] == ["1", "2"]
    assert backend.requests >= 2


async def test_a_full_queue_drops_the_oldest() -> None:
    cfg = config("http://unused.test/h", queue_events=2)
    sink = MemorySink(cfg, Sender(cfg, sign))
    sink.put([ev("client_event", "c", str(i)) for i in range(5)])
    assert len(sink.schedule) == 2
    assert sink.dropped == 3


async def test_filtered_events_are_not_queued() -> None:
    cfg = config("http://unused.test/h", channels=("presence-*",), kinds=("member_added",))
    sink = MemorySink(cfg, Sender(cfg, sign))
    sink.put(
        [ev("client_event"), ev("member_added", "private-x", "a"), ev("member_added", user="a")]
    )
    assert len(sink.schedule) == 1


async def test_shutdown_delivers_held_events(receiver: tuple[Receiver, str]) -> None:
    backend, url = receiver
    cfg = config(url, hold_seconds=30.0)
    sink = MemorySink(cfg, Sender(cfg, sign))
    await sink.start()
    sink.put([ev("member_removed", user="ann")])
    await sink.aclose()
    assert backend.kinds() == [("member_removed", "presence-room", "ann")]


async def test_the_process_sink_takes_what_drivers_emit() -> None:
    cfg = config("http://unused.test/h")
    sink = MemorySink(cfg, Sender(cfg, sign))
    emit([ev("client_event")])  # nothing installed: nothing happens
    install(sink)
    try:
        assert installed() is sink
        emit([ev("client_event")])
        assert len(sink.schedule) == 1
    finally:
        uninstall(sink)
    assert installed() is None


async def test_a_batch_retried_at_shutdown_finishes_within_the_drain(
    receiver: tuple[Receiver, str],
) -> None:
    backend, url = receiver
    backend.failures = [503]  # the loop is waiting to retry when the process stops
    cfg = config(url, backoff_seconds=1.0)
    sink = MemorySink(cfg, Sender(cfg, sign))
    await sink.start()
    sink.put([ev("member_added", user="ann")])
    for _ in range(100):
        if backend.requests:
            break
        await asyncio.sleep(0.02)
    await sink.aclose()
    assert backend.kinds() == [("member_added", "presence-room", "ann")]
    assert backend.requests == 2
