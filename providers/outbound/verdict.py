"""What one attempt's outcome says about the request, as the provider's classifier judges it.

    delivered        a 2xx: the call is done
    surely not       never reached the provider (UNREACHABLE), or answered with a failure that may
                     pass (FAILED: a 5xx; LIMITED: a 429 with its Retry-After): safe to send again
    maybe            sent, unanswered (UNANSWERED): the provider may have it. Sent again only to a
                     provider that drops what it already has (Ably by message id); otherwise the
                     call ends at once in ProviderTimeout, 504, `accepted: null`
    final            answered with a refusal that will not pass (REFUSED): its error is raised

Each provider supplies a `Classifier`: the transport errors are judged alike for all of them
(`Classifier.transport`), the answers by each (`Classifier.answer`).
"""

from __future__ import annotations

import email.utils
import enum
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import httpx

if TYPE_CHECKING:
    from core.errors import ProviderError

# Raised before the request left: the connection was never made, or no pooled one was free.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Kind(enum.Enum):
    """The outcome of one attempt, as far as delivery goes."""

    DELIVERED = "delivered"
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    LIMITED = "limited"
    UNANSWERED = "unanswered"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A classifier's judgement of one attempt; `failure` says what went wrong, in a few words
    and without secrets (it goes to logs and to the caller's problem detail)."""

    kind: Kind
    failure: str = ""
    retry_after: float | None = None  # LIMITED: the provider's Retry-After, in seconds
    error: ProviderError | None = None  # REFUSED: what the call raises

    @classmethod
    def delivered(cls) -> Verdict:
        """The provider took the request."""
        return cls(Kind.DELIVERED)

    @classmethod
    def unreachable(cls, failure: str) -> Verdict:
        """Never reached the provider: send again; when every attempt failed, 503."""
        return cls(Kind.UNREACHABLE, failure)

    @classmethod
    def failed(cls, failure: str) -> Verdict:
        """Answered with a failure that may pass: send again; at last, 502 retryable."""
        return cls(Kind.FAILED, failure)

    @classmethod
    def limited(cls, failure: str, retry_after: float | None) -> Verdict:
        """Rate limited: send again after Retry-After; at last, 503 with Retry-After."""
        return cls(Kind.LIMITED, failure, retry_after=retry_after)

    @classmethod
    def unanswered(cls, failure: str) -> Verdict:
        """Sent, not answered: maybe delivered."""
        return cls(Kind.UNANSWERED, failure)

    @classmethod
    def refused(cls, error: ProviderError) -> Verdict:
        """Final: raise `error`, send nothing again."""
        return cls(Kind.REFUSED, error.detail, error=error)


class Classifier:
    """A provider's judge of outcomes; subclasses name the provider and judge its answers."""

    name: ClassVar[str]  # the provider, first word of every error message
    item: ClassVar[str]  # what a maybe-delivered call may have delivered: "event", "message"
    # Whether the provider drops a request it already has, so a maybe-delivered one may be sent
    # again: Ably by message id; Supabase's clients by the relay's id (meta.id).
    deduplicates: ClassVar[bool] = False

    def classify(self, outcome: httpx.Response | httpx.TransportError) -> Verdict:
        """The verdict on an answer or on the transport error that came instead."""
        if isinstance(outcome, httpx.Response):
            return self.answer(outcome)
        return self.transport(outcome)

    def transport(self, error: httpx.TransportError) -> Verdict:
        """Failed before the request left: unreachable; any later: unanswered. (httpcore checks
        a kept-alive connection before reusing it, so a stale one is not the second case.)"""
        if isinstance(error, NEVER_SENT):
            return Verdict.unreachable(f"unreachable ({type(error).__name__})")
        return Verdict.unanswered(f"did not answer ({type(error).__name__})")

    def answer(self, response: httpx.Response) -> Verdict:
        """The verdict on the provider's answer."""
        raise NotImplementedError


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" and "nan" parse as floats too: no hint, then
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
