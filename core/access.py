"""Turning a policy decision into an answer: allowed, or the right refusal (401 or 403)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import Forbidden, Unauthenticated
from core.policy import Allow, AllowPresence, Deny

if TYPE_CHECKING:
    from core.policy import Action, Decision, Policy
    from core.principal import Principal


def require(
    policy: Policy, principal: Principal, action: Action, channel: str
) -> Allow | AllowPresence:
    """The allowing decision, or raise Unauthenticated (a login would help) or Forbidden."""
    return allowed(policy.decide(principal, action, channel), channel)


def allowed(decision: Decision, channel: str) -> Allow | AllowPresence:
    """The decision if it allows; a Deny raised as Unauthenticated or Forbidden."""
    if isinstance(decision, Deny):
        if decision.unauthenticated:
            raise Unauthenticated(decision.reason)
        raise Forbidden(decision.reason, channel=channel)
    return decision
