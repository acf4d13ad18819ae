"""Opportunistic batching: what arrives while calls are in flight rides the next batch call.

No timer: an item that finds a free call slot is sent at once, so latency under light load is one
call; under heavy load up to `batch_size` items share a call, so throughput grows with the load.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Sends items in batches of `batch_size` or fewer, at most `max_in_flight` calls at once."""

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[Any]],
        *,
        batch_size: int,
        max_in_flight: int,
    ) -> None:
        self._send = send
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._pending: deque[tuple[T, asyncio.Future[None]]] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0  # batch calls made: the benchmark reports items per call

    async def submit(self, items: Sequence[T]) -> None:
        """Queue the items and wait until every one was sent; raise the first failure."""
        if (
            not self._pending
            and self._in_flight < self._max_in_flight
            and len(items) <= self._batch_size
        ):
            # A free slot and nothing waiting: send from the caller's own task, with no hand-off
            # to another (the light-load latency); what arrives meanwhile queues as usual.
            self._in_flight += 1
            try:
                self.calls += 1
                await self._send(list(items))
            finally:
                self._in_flight -= 1
                self._dispatch()
            return
        loop = asyncio.get_running_loop()
        futures = []
        for item in items:
            future: asyncio.Future[None] = loop.create_future()
            self._pending.append((item, future))
            futures.append(future)
        self._dispatch()
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _dispatch(self) -> None:
        while self._pending and self._in_flight < self._max_in_flight:
            size = min(self._batch_size, len(self._pending))
            chunk = [self._pending.popleft() for _ in range(size)]
            self._in_flight += 1
            task = asyncio.create_task(self._run(chunk))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, chunk: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            self.calls += 1
            await self._send([item for item, _ in chunk])
        except Exception as exc:  # every waiter of this call learns why it failed
            for _, future in chunk:
                if not future.done():
                    future.set_exception(exc)
        else:
            for _, future in chunk:
                if not future.done():
                    future.set_result(None)
        finally:
            self._in_flight -= 1
            self._dispatch()

    async def aclose(self) -> None:
        """Wait until everything queued has been sent (each finished call dispatches the next,
        and calls sent from a caller's own task count as in flight too)."""
        while self._tasks or self._in_flight or self._pending:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:
                await asyncio.sleep(0.005)
