"""The policy gate: which rule governs a channel, and what it decides for a principal and action.

Deny by default: a channel no rule matches is denied, and a matched rule grants an action only
through one of its terms. `decide` and `explain` apply the same rule through the same code, so
what `relay policy explain` prints is always what the routes enforce; `decide` only skips
building the explanation. A caller that needs both the rule (for its rate limits or schemas)
and the decision matches the channel once (`match`) and decides on that match.

A client event is asked with `subscribed=True` by the protocol session, whose connection's
subscription to the channel the policy authorized: the `subscriber` term grants it. Asked without
it (an explanation, a token's grants), `subscriber` grants whom the rule lets subscribe.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, NamedTuple

from msgspec import Struct
from msgspec.structs import force_setattr

from core.errors import ConfigurationError
from core.policy.decisions import Action, Allow, AllowPresence, Decision, Deny, Explanation
from core.policy.loader import parse_policy
from core.policy.rules import Context, Rule, Subscriber, Verdict
from core.principal import PrincipalKind

if TYPE_CHECKING:
    from pathlib import Path

    from core.policy.rules import Hook, Term
    from core.principal import Principal

DEFAULT_SOURCE = "built-in default"
PRESENCE_PREFIX = "presence-"


class Match(NamedTuple):
    """The rule that governs a channel and the placeholders its pattern bound."""

    rule: Rule
    params: dict[str, str]


class Policy(Struct, frozen=True):
    """An ordered list of rules, first match decides, and the optional hook its terms may call."""

    rules: tuple[Rule, ...]
    source: str  # "built-in default" or the policy file path
    hook: Hook | None = None

    def __post_init__(self) -> None:
        force_setattr(self, "rules", tuple(self.rules))  # a list given stays immutable
        unserved = next((rule for rule in self.rules if rule.uses_hook), None)
        if self.hook is None and unserved is not None:
            raise ConfigurationError(
                f"{self.source}: rule #{unserved.index} ({unserved.pattern}) uses the 'hook' "
                'term but no hook = "package.module:function" is set'
            )

    @classmethod
    def default(cls) -> Policy:
        """The built-in policy shipped as core/policy/default.toml."""
        return _default_policy()

    @classmethod
    def from_file(cls, path: Path) -> Policy:
        """Load a policy file, raising ConfigurationError naming the file on any problem."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{path}: cannot read the policy file: {exc}") from exc
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_toml(cls, text: str, *, source: str) -> Policy:
        """Parse a policy from TOML text; `source` names it in errors and explanations."""
        document = parse_policy(text, source=source)
        return cls(document.rules, source, document.hook)

    def match(self, channel: str) -> Match | None:
        """The first rule whose pattern matches the whole channel name, with its bindings."""
        for rule in self.rules:
            params = rule.match(channel)
            if params is not None:
                return Match(rule, params)
        return None

    def rule_for(self, channel: str) -> Rule | None:
        """The first rule whose pattern matches the whole channel name, or None."""
        found = self.match(channel)
        return None if found is None else found.rule

    def decide(
        self, principal: Principal, action: Action, channel: str, *, subscribed: bool = False
    ) -> Decision:
        """Allow, AllowPresence or Deny for this principal doing this action on this channel.

        `subscribed`: the caller is a connection whose subscription to the channel the policy
        authorized (the session sending a client event says so).
        """
        return self.decide_matched(
            principal, action, channel, self.match(channel), subscribed=subscribed
        )

    def decide_matched(
        self,
        principal: Principal,
        action: Action,
        channel: str,
        found: Match | None,
        *,
        subscribed: bool = False,
    ) -> Decision:
        """`decide` for a channel already matched (`found` is `match(channel)`)."""
        if found is None:
            return _unmatched(channel)
        return self._apply(
            found.rule, principal, Action(action), channel, found.params, [], subscribed=subscribed
        )

    def explain(
        self, principal: Principal, action: Action, channel: str, *, subscribed: bool = False
    ) -> Explanation:
        """The decision together with the rule, bindings and term verdicts that produced it."""
        action = Action(action)
        found = self.match(channel)
        if found is None:
            return Explanation(
                channel, action, principal, None, {}, [], _unmatched(channel), source=self.source
            )
        rule, params = found
        tried: list[tuple[str, str]] = []
        decision = self._apply(
            rule, principal, action, channel, params, tried, subscribed=subscribed
        )
        return Explanation(
            channel,
            action,
            principal,
            rule.pattern,
            params,
            tried,
            decision,
            rule_index=rule.index,
            source=self.source,
        )

    def _apply(
        self,
        rule: Rule,
        principal: Principal,
        action: Action,
        channel: str,
        params: dict[str, str],
        tried: list[tuple[str, str]],
        *,
        subscribed: bool = False,
    ) -> Decision:
        """Try the rule's terms for `action` in order, recording each verdict in `tried`."""
        anonymous = principal.kind is PrincipalKind.ANONYMOUS
        presence = action is Action.SUBSCRIBE and channel.startswith(PRESENCE_PREFIX)
        if presence and not (principal.is_user and principal.id):
            # Presence lists members by user id: with no signed-in user there is no one to list.
            return Deny(
                "presence channels need a signed-in user",
                rule=rule.pattern,
                unauthenticated=anonymous,
            )
        terms = rule.terms(action)
        if not terms:
            return Deny(f"rule {rule.pattern} grants {action.value} to nobody", rule=rule.pattern)

        subscription = None
        if action is Action.CLIENT_EVENT and any(isinstance(t, Subscriber) for t in terms):
            subscription = self._subscription(
                rule, principal, channel, params, subscribed=subscribed
            )
        context = Context(principal, action, channel, params, self.hook, subscription)
        login_would_help = False
        for term in terms:
            verdict = term.evaluate(context)
            tried.append((term.text, verdict.text))
            if verdict.granted:
                return _grant(rule, principal, action, term, verdict, presence=presence)
            login_would_help = login_would_help or verdict.needs_login
        reasons = "; ".join(verdict_text.removeprefix("no: ") for _, verdict_text in tried)
        return Deny(
            f"rule {rule.pattern} does not grant {action.value} to "
            f"{principal.describe()}: {reasons}",
            rule=rule.pattern,
            # Only an anonymous caller can be helped by logging in; a user denied stays 403.
            unauthenticated=anonymous and login_would_help,
        )

    def _subscription(
        self,
        rule: Rule,
        principal: Principal,
        channel: str,
        params: dict[str, str],
        *,
        subscribed: bool,
    ) -> Verdict:
        """Whether the caller is a subscriber: its connection says, or else the rule's subscribe."""
        if subscribed:
            return Verdict(True, "the connection's subscription to the channel was authorized")
        decision = self._apply(rule, principal, Action.SUBSCRIBE, channel, params, [])
        if isinstance(decision, Deny):
            return Verdict(
                False,
                f"{principal.describe()} may not subscribe ({decision.reason})",
                needs_login=decision.unauthenticated,
            )
        return Verdict(True, f"{principal.describe()} may subscribe ({decision.reason})")


def _grant(
    rule: Rule,
    principal: Principal,
    action: Action,
    term: Term,
    verdict: Verdict,
    *,
    presence: bool,
) -> Decision:
    """The Allow (or AllowPresence) for a term that granted."""
    reason = f"{term.text} grants {action.value} to {principal.describe()}"
    if isinstance(verdict.hook_decision, Allow | AllowPresence):
        reason = f"{reason}: {verdict.hook_decision.reason}"
    if not presence or principal.id is None:
        return Allow(rule=rule.pattern, reason=reason)
    if isinstance(verdict.hook_decision, AllowPresence):
        # The hook may share what the rule cannot; the member id is always the caller's own.
        info = dict(verdict.hook_decision.user_info)
    else:
        info = {key: principal.claims[key] for key in rule.presence_info if key in principal.claims}
    return AllowPresence(rule=rule.pattern, reason=reason, user_id=principal.id, user_info=info)


def _unmatched(channel: str) -> Deny:
    return Deny(f"no rule matches channel {channel!r}", rule=None)


@cache
def _default_policy() -> Policy:
    # A Policy is immutable, so one parsed copy of the built-in default serves every caller.
    text = resources.files("core.policy").joinpath("default.toml").read_text(encoding="utf-8")
    return Policy.from_toml(text, source=DEFAULT_SOURCE)
