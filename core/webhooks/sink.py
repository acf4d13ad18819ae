"""The process's webhook sink: what the sessions' drivers and the webhook route hand events to.

One per process, as logging's handlers are: the drivers (the local socket servers, SSE, the API
Gateway handlers) reach it without being handed it, and with no sink installed (RELAY_WEBHOOK_URL
unset) `emit` is one test of a list, so a relay without webhooks pays nothing for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.provider import ChannelEvent


class Sink(Protocol):
    """A queue of channel events for the app's backend."""

    def put(self, events: Sequence[ChannelEvent]) -> None:
        """Enqueue without waiting (the events are filtered here)."""

    async def settle(self) -> None:
        """Wait until what `put` took is in the queue (Lambda: sent to SQS before the
        invocation returns)."""

    async def start(self) -> None:
        """Start delivering."""

    async def aclose(self) -> None:
        """Deliver what can be within the drain bound, then stop."""


_installed: list[Sink] = []


def emit(events: Sequence[ChannelEvent]) -> None:
    """Hand channel events to the installed sink, if any; never waits."""
    if events and _installed:
        _installed[0].put(events)


async def settle() -> None:
    """Wait until the installed sink has queued what it was handed."""
    if _installed:
        await _installed[0].settle()


def install(sink: Sink) -> None:
    """Make `sink` the process's sink (replacing any)."""
    _installed[:] = [sink]


def uninstall(sink: Sink) -> None:
    """Remove `sink` if it is the installed one."""
    if _installed and _installed[0] is sink:
        _installed.clear()


def installed() -> Sink | None:
    """The process's sink, if one is installed."""
    return _installed[0] if _installed else None
