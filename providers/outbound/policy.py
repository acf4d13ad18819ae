"""How a provider's calls are retried: attempts, full-jitter backoff, Retry-After, the deadline.

Free of httpx, so a provider can read its deadline at start-up (Ably's resend window does).
"""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts and waits of one call; `max_retry_wait_seconds` set means Retry-After is honoured
    (up to that long), unset means the backoff alone paces the retries."""

    attempts: int
    timeout_seconds: float
    backoff_base_seconds: float = BACKOFF_BASE_SECONDS
    backoff_cap_seconds: float = BACKOFF_CAP_SECONDS
    max_retry_wait_seconds: float | None = None

    def backoff(self, attempt: int, jitter: float) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based), `jitter` drawn from [0, 1)."""
        return backoff(
            attempt, jitter, base=self.backoff_base_seconds, cap=self.backoff_cap_seconds
        )

    def wait(self, attempt: int, jitter: float, retry_after: float | None) -> float:
        """The wait after failed attempt `attempt`: the provider's Retry-After where it is
        honoured (capped), the backoff otherwise."""
        if retry_after is not None and self.max_retry_wait_seconds is not None:
            return min(retry_after, self.max_retry_wait_seconds)
        return self.backoff(attempt, jitter)

    @property
    def longest_wait_seconds(self) -> float:
        """The longest a wait between two attempts can be."""
        return max(self.backoff_cap_seconds, self.max_retry_wait_seconds or 0.0)

    @property
    def deadline_seconds(self) -> float:
        """How long one whole call may take: every attempt timing out, every wait at its
        longest. The retry loop enforces it, so nothing of a call reaches the provider later."""
        waits = (self.attempts - 1) * self.longest_wait_seconds
        return self.attempts * self.timeout_seconds + waits


def backoff(
    attempt: int,
    jitter: float,
    *,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based), `jitter` drawn from [0, 1)."""
    # Full jitter on an exponential ceiling: retries from many processes do not line up.
    return min(cap, base * (1 << (attempt - 1))) * jitter
