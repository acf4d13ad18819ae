"""RetryPolicy: full-jitter backoff under a cap, Retry-After where honoured, the call's deadline."""

from __future__ import annotations

import pytest

from providers.outbound.policy import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, RetryPolicy


def test_the_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(attempts=10, timeout_seconds=5)
    waits = [policy.backoff(attempt, 1.0) for attempt in range(1, 10)]
    assert waits[:4] == [BACKOFF_BASE_SECONDS * 2**n for n in range(4)]
    assert max(waits) == BACKOFF_CAP_SECONDS
    assert waits[-1] == BACKOFF_CAP_SECONDS


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.999])
def test_jitter_scales_the_whole_wait(jitter: float) -> None:
    policy = RetryPolicy(attempts=3, timeout_seconds=5, backoff_cap_seconds=2.0)
    assert policy.backoff(2, jitter) == BACKOFF_BASE_SECONDS * 2 * jitter
    assert policy.backoff(9, jitter) == 2.0 * jitter


def test_retry_after_is_ignored_unless_honoured() -> None:
    plain = RetryPolicy(attempts=3, timeout_seconds=5)
    assert plain.wait(1, 1.0, 30.0) == BACKOFF_BASE_SECONDS


def test_retry_after_is_honoured_up_to_the_longest_wait() -> None:
    policy = RetryPolicy(attempts=3, timeout_seconds=5, max_retry_wait_seconds=10)
    assert policy.wait(1, 1.0, 3.0) == 3.0
    assert policy.wait(1, 1.0, 600.0) == 10.0
    assert policy.wait(1, 1.0, 0.0) == 0.0
    assert policy.wait(2, 0.5, None) == BACKOFF_BASE_SECONDS  # no hint: the backoff


@pytest.mark.parametrize(
    ("policy", "deadline"),
    [
        (RetryPolicy(attempts=1, timeout_seconds=5), 5.0),
        (RetryPolicy(attempts=3, timeout_seconds=5), 3 * 5 + 2 * BACKOFF_CAP_SECONDS),
        # Ably's defaults: its backoff caps at 2 s, its Retry-After at 10 s.
        (
            RetryPolicy(
                attempts=3, timeout_seconds=5, backoff_cap_seconds=2, max_retry_wait_seconds=10
            ),
            3 * 5 + 2 * 10.0,
        ),
        # A Retry-After cap below the backoff's: the backoff is the longest wait.
        (
            RetryPolicy(
                attempts=3, timeout_seconds=5, backoff_cap_seconds=2, max_retry_wait_seconds=0.5
            ),
            3 * 5 + 2 * 2.0,
        ),
    ],
)
def test_the_deadline_is_every_attempt_timing_out_and_every_wait_longest(
    policy: RetryPolicy, deadline: float
) -> None:
    assert policy.deadline_seconds == deadline
