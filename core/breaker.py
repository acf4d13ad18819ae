"""A circuit breaker per provider: fail fast with 503 while the provider is failing, then probe."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, TypeVar

from core.errors import ProviderError, ProviderUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")


class CircuitBreaker:
    """Closed; open after `failures` retryable failures in a row; one probe after `cooldown`."""

    def __init__(
        self, *, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._count = 0
        self._opened_at: float | None = None
        self._probing = False
        # Told each provider call's seconds and whether it succeeded (app/metrics.py); None: not
        # measured, and not timed.
        self.observer: Callable[[float, bool], None] | None = None

    @property
    def state(self) -> str:
        """closed, open or half-open."""
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.cooldown else "open"

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run the operation unless the breaker is open; count how it went."""
        self._admit()
        observer = self.observer
        started = time.perf_counter() if observer is not None else 0.0
        try:
            result = await operation()
        except BaseException as exc:
            if observer is not None:
                observer(time.perf_counter() - started, False)
            self._probing = False
            if isinstance(exc, ProviderError) and exc.retryable:
                # A refusal (4xx) says the provider is up: it does not count.
                self._count += 1
                if self._count >= self.failures or self._opened_at is not None:
                    self._opened_at = self._clock()
            raise
        if observer is not None:
            observer(time.perf_counter() - started, True)
        self._count, self._opened_at, self._probing = 0, None, False
        return result

    def _admit(self) -> None:
        if self._opened_at is None:
            return
        remaining = self.cooldown - (self._clock() - self._opened_at)
        if remaining > 0 or self._probing:
            raise ProviderUnavailable(
                "the provider is failing; the relay is not sending to it for now",
                retry_after=max(1, math.ceil(remaining)),
            )
        self._probing = True  # half-open: this call is the probe, the others still wait
