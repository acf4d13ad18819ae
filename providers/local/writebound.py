"""The local provider's slow-consumer rule, for every writer that owns a transport (the lean
WebSocket server, SSE on a lent connection): once asyncio's flow control says the transport's
buffer is past its high-water mark, at most `limit` more frames are buffered; the next one tells
the writer to cut the client off."""

from __future__ import annotations


class WriteBound:
    """The flow-control callbacks of a transport's protocol, and the count they keep."""

    __slots__ = ("_backlog", "_limit", "_paused")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._paused = False  # the transport's buffer is past its high-water mark
        self._backlog = 0  # frames written since it was

    def pause_writing(self) -> None:
        """The transport's buffer is full: count what is written from now on."""
        self._paused = True
        self._backlog = 0

    def resume_writing(self) -> None:
        """The client caught up."""
        self._paused = False
        self._backlog = 0

    def _past_bound(self) -> bool:
        """One more frame to write: whether it passes the bound (the client must be cut off)."""
        if not self._paused:
            return False
        self._backlog += 1
        return self._backlog > self._limit
