"""Client writes a provider grants in a token rather than checks per message.

On the relay's own Pusher servers `subscriber` lets a channel's subscribers send `client-*` events,
which the session holds to that prefix, rate-limits and never echoes (providers/pusherproto/).
A token (Ably's capability) or a database policy (Supabase's insert on realtime.messages) cannot be
held to `client-*` names: granting it there would let any subscriber send under a name the backend
uses. Those providers compile `without_subscriber(policy)`, so the built-in policy grants them no
client writes, and a rule that names its senders (`client_events = ["user"]`) still does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec import structs

from core.policy.decisions import Action
from core.policy.rules import Subscriber

if TYPE_CHECKING:
    from collections.abc import Mapping

    from core.policy.engine import Policy
    from core.policy.rules import Term


def without_subscriber(policy: Policy) -> Policy:
    """The policy with `subscriber` left out of every rule's client_events."""
    rules = tuple(
        structs.replace(rule, permissions=_senders(rule.permissions)) for rule in policy.rules
    )
    return structs.replace(policy, rules=rules)


def _senders(permissions: Mapping[Action, tuple[Term, ...]]) -> dict[Action, tuple[Term, ...]]:
    return {
        action: tuple(
            t for t in terms if not (action is Action.CLIENT_EVENT and isinstance(t, Subscriber))
        )
        for action, terms in permissions.items()
    }
