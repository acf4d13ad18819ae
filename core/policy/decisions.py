"""What the policy gate answers: an action asked for, and an explicit decision about it.

A decision is one of three frozen values, `Allow`, `AllowPresence` and `Deny`. None of them has a
truth value: `if policy.decide(...):` raises `TypeError` instead of quietly treating a `Deny` as
true, so callers must say which outcome they mean (`isinstance` or `match`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from msgspec import Struct

if TYPE_CHECKING:
    from collections.abc import Mapping

    from core.principal import Principal


class Action(StrEnum):
    """What a principal wants to do on a channel."""

    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"
    CLIENT_EVENT = "client_event"
    HISTORY = "history"


def _no_truth_value(self: object) -> NoReturn:
    # A record instance is always truthy, which would make `if decision:` allow every Deny.
    raise TypeError(
        f"{type(self).__name__} has no truth value: test isinstance(decision, Deny) instead"
    )


class Allow(Struct, frozen=True):
    """The action is allowed by `rule` (a pattern, or a hook's own label)."""

    rule: str
    reason: str

    __bool__ = _no_truth_value


class AllowPresence(Struct, frozen=True):
    """A presence subscription is allowed; `user_id` and `user_info` are what other members see."""

    rule: str
    reason: str
    user_id: str
    user_info: Mapping[str, Any]

    __bool__ = _no_truth_value


class Deny(Struct, frozen=True):
    """The action is denied; `unauthenticated` says a login would help (401 rather than 403)."""

    reason: str
    rule: str | None = None
    unauthenticated: bool = False

    __bool__ = _no_truth_value


Decision: TypeAlias = Allow | AllowPresence | Deny


class Explanation(Struct, frozen=True):
    """Why the policy decided what it did: the rule that matched, its bindings, each term tried."""

    channel: str
    action: Action
    principal: Principal
    rule: str | None  # the matched pattern, None when no rule matched
    params: dict[str, str]  # the placeholders the pattern bound
    terms: list[tuple[str, str]]  # (term, verdict text) in the order they were tried
    decision: Decision
    rule_index: int | None = None  # 1-based position of the rule in its source
    source: str = ""  # "built-in default" or the policy file path

    def render(self) -> str:
        """Multi-line human text, as `relay policy explain` prints it."""
        lines = [
            f"channel {self.channel}, action {self.action.value}, "
            f"principal {self.principal.describe()}"
        ]
        if self.rule is None:
            lines.append(f"no rule in {self.source or 'the policy'} matches this channel")
            lines.append("  deny by default applies")
        else:
            bound = ", ".join(f"{name}={value!r}" for name, value in self.params.items())
            where = f" ({self.source})" if self.source else ""
            lines.append(
                f"matched rule #{self.rule_index} {self.rule}{where}"
                + (f" with {bound}" if bound else "")
            )
            lines.extend(f"  {term} -> {verdict}" for term, verdict in self.terms)
            if not self.terms:
                lines.append("  no term was tried")
        lines.append(_render_decision(self.decision))
        return "\n".join(lines)


def _render_decision(decision: Decision) -> str:
    if isinstance(decision, AllowPresence):
        info = ", ".join(f"{key}={value!r}" for key, value in decision.user_info.items())
        return (
            f"ALLOW as presence member {decision.user_id!r}"
            f" (user_info: {info or 'none'}): {decision.reason}"
        )
    if isinstance(decision, Allow):
        return f"ALLOW: {decision.reason}"
    status = "401, a login would help" if decision.unauthenticated else "403"
    return f"DENY ({status}): {decision.reason}"
