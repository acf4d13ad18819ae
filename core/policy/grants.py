"""What a policy lets one principal do, listed up front for providers that issue tokens.

The policy decides one channel at a time; a token (an Ably capability, a Supabase claim set) must
say in advance which channels it opens. `grants` bridges the two without ever widening:

* **exact channels** — a literal pattern, a pattern whose every placeholder a term binds to the
  principal (`private-user-{id}` with `user:{id}`, `team-{team}` with `claim:teams={team}`), or a
  channel the caller names — are each put to `Policy.decide` itself, so first-match order, hooks
  and the presence rule hold exactly as they do for live requests;
* **subscriber** — client events granted to the channel's subscribers are granted wherever the
  rule's `subscribe` terms grant: the principal binds those terms' placeholders;
* **open patterns** — a placeholder that no term binds (`presence-{name}` with `user`) — cannot be
  checked channel by channel. They are reported as `PatternGrant`s together with the earlier rules
  that may decide some of their channels first, for a provider to express only where its own
  wildcards can say exactly that, and to leave out otherwise.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from msgspec import Struct

from core.policy.decisions import Action, Allow, AllowPresence
from core.policy.patterns import CHANNEL_CHARS, Pattern, PatternError
from core.policy.rules import ClaimIs, Context, HookTerm, Subscriber, UserIs

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from core.policy.engine import Policy
    from core.policy.patterns import Template
    from core.policy.rules import Rule, Term
    from core.principal import Principal

# A list claim binds one channel per item; more than this many items are not enumerated.
MAX_CLAIM_VALUES = 100
_CHANNEL_TEXT = re.compile(f"[{CHANNEL_CHARS}]+")


class ChannelGrant(Struct, frozen=True):
    """One exact channel and every action the policy allows on it; `presence` for members."""

    channel: str
    actions: frozenset[Action]
    presence: bool = False


class PatternGrant(Struct, frozen=True):
    """A rule's pattern, with the placeholders terms bound filled in, that grants `actions`.

    `open` names the placeholders left free; `by_hook` says a hook grants some of the actions,
    deciding channel by channel, so they may not hold on all of them; `shadowed_by` lists earlier
    patterns that may match some of the same channels and, by first match, decide those instead.
    The engine's own rules (presence needs a signed-in user) apply on top.
    """

    rule_index: int
    pattern: Pattern
    open: tuple[str, ...]
    actions: frozenset[Action]
    by_hook: bool
    shadowed_by: tuple[str, ...]


class Grants(Struct, frozen=True):
    """Everything `grants` found: exact channels, and the patterns it could not enumerate."""

    channels: tuple[ChannelGrant, ...]
    patterns: tuple[PatternGrant, ...]


def grants(policy: Policy, principal: Principal, *, channels: Iterable[str] = ()) -> Grants:
    """The exact channels (plus `channels`, if the policy allows them) and open patterns."""
    candidates: dict[str, None] = dict.fromkeys(channels)
    open_actions: dict[tuple[int, str], set[Action]] = {}
    open_by_hook: dict[tuple[int, str], bool] = {}
    open_grants: dict[tuple[int, str], tuple[Pattern, Rule]] = {}
    for position, rule in enumerate(policy.rules):
        for action, terms in rule.permissions.items():
            for asked, term in _granting(rule, action, terms):
                for params in _bindings(term, principal):
                    bound = _bind(rule, params)
                    if bound is None:
                        continue
                    if not bound.placeholders:
                        if rule.match(bound.text) is not None:
                            candidates.setdefault(bound.text)
                        continue
                    by_hook = isinstance(term, HookTerm)
                    if not by_hook and not _term_grants(term, principal, asked, bound, params):
                        continue
                    key = (position, bound.text)
                    open_grants.setdefault(key, (bound, rule))
                    open_actions.setdefault(key, set()).add(action)
                    open_by_hook[key] = open_by_hook.get(key, False) or by_hook
    decided = (_decide_all(policy, principal, channel) for channel in candidates)
    exact = tuple(found for found in decided if found is not None)
    patterns = tuple(
        PatternGrant(
            rule_index=rule.index,
            pattern=bound,
            open=bound.placeholders,
            actions=frozenset(open_actions[key]),
            by_hook=open_by_hook[key],
            shadowed_by=tuple(
                earlier.pattern
                for earlier in policy.rules[: key[0]]
                if _may_overlap(earlier.compiled, bound)
            ),
        )
        for key, (bound, rule) in open_grants.items()
    )
    return Grants(exact, patterns)


def _granting(rule: Rule, action: Action, terms: Iterable[Term]) -> Iterable[tuple[Action, Term]]:
    """Each term with the action it is asked for; `subscriber` stands for the subscribe terms."""
    for term in terms:
        if isinstance(term, Subscriber):
            yield from ((Action.SUBSCRIBE, t) for t in rule.terms(Action.SUBSCRIBE))
        else:
            yield action, term


def _decide_all(policy: Policy, principal: Principal, channel: str) -> ChannelGrant | None:
    """Every action the engine itself allows on one channel, or None if it allows none."""
    allowed: set[Action] = set()
    presence = False
    for action in Action:
        decision = policy.decide(principal, action, channel)
        if isinstance(decision, Allow | AllowPresence):
            allowed.add(action)
            presence = presence or isinstance(decision, AllowPresence)
    return ChannelGrant(channel, frozenset(allowed), presence) if allowed else None


def _bindings(term: Term, principal: Principal) -> list[dict[str, str]]:
    """The placeholder values under which `term` could grant to `principal` ([{}]: binds none)."""
    template: Template | None = None
    values: list[str] = []
    if isinstance(term, UserIs):
        template = term.value
        values = [principal.id] if principal.is_user and principal.id is not None else []
    elif isinstance(term, ClaimIs):
        template = term.value
        values = _claim_values(principal, term.claim) if principal.is_user else []
    if template is None or all(isinstance(part, str) for part in template.parts):
        return [{}]  # the term binds nothing: it grants the whole pattern or none of it
    solved = (_solve(template, value) for value in values[:MAX_CLAIM_VALUES])
    return [params for params in solved if params is not None]


def _claim_values(principal: Principal, claim: str) -> list[str]:
    # The same comparison ClaimIs makes: strings and integers only, never booleans.
    raw = principal.claims.get(claim)
    items = list(raw) if isinstance(raw, list | tuple) else [raw]
    return [str(v) for v in items if isinstance(v, str | int) and not isinstance(v, bool)]


def _solve(template: Template, value: str) -> dict[str, str] | None:
    """Placeholder values that make the template render as `value` (one solution, or None)."""
    seen: set[str] = set()
    parts: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            parts.append(re.escape(part))
        elif part.name in seen:
            parts.append(f"(?P={part.name})")
        else:
            seen.add(part.name)
            parts.append(f"(?P<{part.name}>.+)")
    found = re.fullmatch("".join(parts), value)
    return None if found is None else found.groupdict()


def _bind(rule: Rule, params: Mapping[str, str]) -> Pattern | None:
    """The rule's pattern with bound placeholders filled in, or None when a value could never be
    what the placeholder matches (so the bound pattern names only channels the rule matches)."""
    text = rule.pattern
    for name, value in params.items():
        placeholder = "{" + name + "}"
        ends_pattern = rule.pattern.endswith(placeholder)
        if not _CHANNEL_TEXT.fullmatch(value) or ("-" in value and not ends_pattern):
            return None
        text = text.replace(placeholder, value)
    try:
        return Pattern.compile(text)
    except PatternError:  # defensive: the checks above leave nothing for it to refuse
        return None


def _term_grants(
    term: Term, principal: Principal, action: Action, bound: Pattern, params: Mapping[str, str]
) -> bool:
    # Terms that reach here depend on the principal only, never on the channel's own name.
    return term.evaluate(Context(principal, action, bound.text, params, None)).granted


def _literal_ends(pattern: Pattern) -> tuple[str, str]:
    text = pattern.text
    if not pattern.placeholders:
        return text, text
    return text[: text.index("{")], text[text.rindex("}") + 1 :]


def _may_overlap(earlier: Pattern, later: Pattern) -> bool:
    """False only when no channel can match both (their literal ends disagree); else True."""
    if not earlier.placeholders:
        return later.match(earlier.text) is not None
    head_a, tail_a = _literal_ends(earlier)
    head_b, tail_b = _literal_ends(later)
    heads_agree = head_a.startswith(head_b) or head_b.startswith(head_a)
    tails_agree = tail_a.endswith(tail_b) or tail_b.endswith(tail_a)
    return heads_agree and tails_agree
