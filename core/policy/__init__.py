"""The policy gate: may this principal do this action on this channel? Deny by default.

    policy = Policy.default()  # or Policy.from_file(settings.policy_file)
    match policy.decide(principal, Action.SUBSCRIBE, channel):
        case AllowPresence(user_id=user_id, user_info=info): ...
        case Allow(): ...
        case Deny(reason=reason, unauthenticated=True): raise Unauthenticated(reason)
        case Deny(reason=reason): raise Forbidden(reason)

The policy file format is described in core.policy.loader and in core/policy/default.toml.
"""

from core.policy.decisions import Action, Allow, AllowPresence, Decision, Deny, Explanation
from core.policy.engine import Match, Policy
from core.policy.rules import Hook, Rule, Term

__all__ = [
    "Action",
    "Allow",
    "AllowPresence",
    "Decision",
    "Deny",
    "Explanation",
    "Hook",
    "Match",
    "Policy",
    "Rule",
    "Term",
]
