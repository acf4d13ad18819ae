"""Deadlines of one length for many tasks, kept by one timer instead of one timer each.

Every request body must arrive within RELAY_REQUEST_READ_TIMEOUT_SECONDS of its first read.
`asyncio.timeout` arms and cancels a timer per request, about 5 us of each (bench/README.md,
"Auth"); here a task starting its wait joins an insertion-ordered dict, which is in deadline
order because every deadline is its start plus the same length, and leaves it when done; one
timer, armed for the oldest task still waiting, cancels the late ones. What a task pays is a
dict entry.

    deadline = deadlines.start()
    try:
        ...  # awaits the timer may cut short
    except asyncio.CancelledError:
        if not deadline.expired():
            raise
        ...  # too late: answer 408
    finally:
        deadline.done()
"""

from __future__ import annotations

import asyncio


class Deadline:
    """One task's deadline in a Deadlines queue."""

    __slots__ = ("_cancelling", "_expired", "_waiting", "task", "when")

    def __init__(
        self, task: asyncio.Task[object], when: float, waiting: dict[Deadline, None]
    ) -> None:
        self.task = task
        self.when = when
        self._waiting = waiting
        self._cancelling = task.cancelling()
        self._expired = False
        waiting[self] = None

    def done(self) -> None:
        """The task has finished what the deadline bounds."""
        self._waiting.pop(self, None)

    def expired(self) -> bool:
        """Whether the CancelledError the task got is the deadline's (and only the deadline's:
        a task also cancelled by someone else stays cancelled), as asyncio.timeout decides."""
        return self._expired and self.task.uncancel() <= self._cancelling


class Deadlines:
    """Deadlines of `seconds` after each `start`, cancelling the tasks that pass theirs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._waiting: dict[Deadline, None] = {}  # oldest first
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> Deadline:
        """A deadline for the current task, `seconds` from now."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests run many): nothing carries over
            self._loop, self._timer, self._waiting = loop, None, {}
        task = asyncio.current_task()
        assert task is not None
        deadline = Deadline(task, loop.time() + self.seconds, self._waiting)
        if self._timer is None:
            self._timer = loop.call_at(deadline.when, self._expire)
        return deadline

    def _expire(self) -> None:
        """Cancel every task past its deadline; re-arm for the oldest one still waiting."""
        assert self._loop is not None
        now = self._loop.time()
        for deadline in list(self._waiting):
            if deadline.when > now:
                self._timer = self._loop.call_at(deadline.when, self._expire)
                return
            del self._waiting[deadline]
            deadline._expired = True
            deadline.task.cancel()
        self._timer = None
