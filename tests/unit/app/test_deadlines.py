"""Deadlines of one length kept by one timer: late tasks cancelled (and told so), punctual ones
untouched, nothing kept for tasks that are done, another cancellation never swallowed."""

from __future__ import annotations

import asyncio

import pytest

from app.deadlines import Deadlines

SECONDS = 0.1


async def wait(deadlines: Deadlines, seconds: float) -> str:
    """Sleep `seconds` under a deadline: "done", or "late" when the deadline cut it short."""
    deadline = deadlines.start()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if not deadline.expired():
            raise
        return "late"
    finally:
        deadline.done()
    return "done"


async def test_only_the_tasks_past_their_deadline_are_cut_short() -> None:
    deadlines = Deadlines(SECONDS)
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(
        wait(deadlines, 0.01), wait(deadlines, 10), wait(deadlines, 0.05), wait(deadlines, 10)
    )
    assert list(results) == ["done", "late", "done", "late"]
    assert asyncio.get_running_loop().time() - started < 5 * SECONDS


async def test_later_starts_get_later_deadlines() -> None:
    deadlines = Deadlines(SECONDS)
    first = asyncio.create_task(wait(deadlines, 10))
    await asyncio.sleep(SECONDS * 0.6)
    second = asyncio.create_task(wait(deadlines, SECONDS * 0.8))  # ends before its own deadline
    assert await first == "late"
    assert not second.done()  # past the first deadline, not yet past its own
    assert await second == "done"


async def test_a_done_task_leaves_nothing_behind() -> None:
    deadlines = Deadlines(SECONDS)
    for _ in range(1000):
        assert await wait(deadlines, 0) == "done"
    assert not deadlines._waiting


async def test_another_cancellation_is_not_taken_for_the_deadline() -> None:
    deadlines = Deadlines(SECONDS)
    task = asyncio.create_task(wait(deadlines, 10))
    await asyncio.sleep(SECONDS / 2)
    task.cancel()  # the caller's own cancellation, before the deadline
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_task_cancelled_by_both_stays_cancelled() -> None:
    deadlines = Deadlines(SECONDS)
    task = asyncio.create_task(wait(deadlines, 10))
    await asyncio.sleep(0)  # it waits
    for deadline in deadlines._waiting:
        deadline.when = 0  # passed
    deadlines._expire()  # the deadline cancels it ...
    task.cancel()  # ... and so does its owner, before it runs again
    with pytest.raises(asyncio.CancelledError):
        await task


def test_each_event_loop_starts_afresh() -> None:
    deadlines = Deadlines(SECONDS)
    for _ in range(2):  # the first loop's timer dies with it; the second arms its own
        assert asyncio.run(wait(deadlines, 10)) == "late"
