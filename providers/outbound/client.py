"""One provider's pooled HTTP client, and the one retry loop every call to a provider runs.

An attempt's outcome goes to the provider's classifier (verdict.py); the loop acts on the verdict:

    delivered                  return the response
    refused                    raise the classifier's error (502, `accepted: false`), or 504
                               `accepted: null` when an earlier attempt may have delivered
    surely not delivered       wait (backoff, or the capped Retry-After) and send again
    maybe delivered            send again where the provider deduplicates, else 504 at once

When the attempts run out: 504 `accepted: null` if any attempt may have delivered, else 503 if
the last one never reached the provider or was rate limited (with its Retry-After), else 502
retryable. The whole call runs under the policy's deadline: an attempt still running when it
passes is cut off (maybe delivered), and no wait that would end past it is started.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import TYPE_CHECKING, TypedDict, Unpack

import httpx

from core.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from providers.outbound.lazy import SHUTTING_DOWN
from providers.outbound.verdict import Kind, Verdict

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from providers.outbound.policy import RetryPolicy
    from providers.outbound.verdict import Classifier

    # One request on the pool; called again for each attempt (Pusher signs each one afresh).
    Attempt = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]

log = logging.getLogger(__name__)


class Hooks(TypedDict, total=False):
    """What a test puts in a provider's client: the pool, and the waits between attempts."""

    http: httpx.AsyncClient | None  # a pool the caller owns and closes
    sleep: Callable[[float], Awaitable[None]]
    jitter: Callable[[], float]  # a draw from [0, 1)


class Outbound:
    """Sends a provider's calls over one connection pool, retried as its classifier allows."""

    def __init__(
        self,
        classifier: Classifier,
        policy: RetryPolicy,
        *,
        base_url: str,
        max_connections: int,
        **hooks: Unpack[Hooks],
    ) -> None:
        self.classifier = classifier
        self.policy = policy
        http = hooks.get("http")
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            base_url=base_url,
            timeout=policy.timeout_seconds,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        self._sleep = hooks.get("sleep", asyncio.sleep)
        self._jitter = hooks.get("jitter", random.random)
        self._closed = False

    async def send(self, attempt: Attempt, *, call: str) -> httpx.Response:
        """Run `attempt` (one request on the pool) until the provider answers it, retrying as
        the verdicts allow; `call` names it in the logs ("POST /events")."""
        policy, judge = self.policy, self.classifier
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.deadline_seconds
        maybe_delivered = False
        made = 0
        verdict = Verdict.delivered()
        while made < policy.attempts:
            if self._closed:  # closed while this call waited between attempts
                raise ProviderUnavailable(SHUTTING_DOWN)
            made += 1
            response, verdict = await self._attempt(attempt, deadline)
            if response is not None and verdict.kind is Kind.DELIVERED:
                return response
            if verdict.error is not None:
                if maybe_delivered:  # the resend's refusal says nothing of the first attempt
                    raise ProviderTimeout(
                        f"{judge.name} refused a resend ({verdict.error.detail}) of a call that "
                        f"did not answer; the {judge.item} may or may not have been delivered"
                    ) from verdict.error
                raise verdict.error
            log.warning(
                "%s %s attempt %d of %d: %s",
                judge.name,
                call,
                made,
                policy.attempts,
                verdict.failure,
            )
            if verdict.kind is Kind.UNANSWERED:
                if not judge.deduplicates:
                    raise ProviderTimeout(
                        f"{judge.name} {verdict.failure}; "
                        f"the {judge.item} may or may not have been delivered"
                    )
                maybe_delivered = True
            if made == policy.attempts:
                break
            wait = policy.wait(made, self._jitter(), verdict.retry_after)
            if loop.time() + wait >= deadline:
                break
            await self._sleep(wait)
        raise self._exhausted(verdict, made, maybe_delivered=maybe_delivered)

    async def _attempt(
        self, attempt: Attempt, deadline: float
    ) -> tuple[httpx.Response | None, Verdict]:
        timer = asyncio.timeout_at(deadline)
        try:
            async with timer:
                response = await attempt(self._http)
        except httpx.TransportError as exc:
            return None, self.classifier.classify(exc)
        except TimeoutError:
            if not timer.expired():
                raise
            seconds = self.policy.deadline_seconds
            return None, Verdict.unanswered(f"did not answer within the call's {seconds:g} s")
        return response, self.classifier.classify(response)

    def _exhausted(self, last: Verdict, made: int, *, maybe_delivered: bool) -> ProviderError:
        name, item = self.classifier.name, self.classifier.item
        tried = f"{name} {last.failure} after {made} attempts"
        if maybe_delivered:
            return ProviderTimeout(f"{tried}; the {item} may or may not have been delivered")
        if last.kind is Kind.UNREACHABLE:
            return ProviderUnavailable(tried)
        if last.kind is Kind.LIMITED:
            return ProviderUnavailable(tried, retry_after=max(1, math.ceil(last.retry_after or 1)))
        return ProviderError(f"{name} {last.failure}", retryable=True)

    async def aclose(self) -> None:
        """Refuse further attempts; close the pool if this object created it."""
        self._closed = True
        if self._owns_http:
            await self._http.aclose()
