"""Reading a policy from TOML, refusing anything it does not understand.

The format::

    hook = "mypackage.mymodule:function"   # optional; imported when the policy loads

    [[rule]]
    pattern = "private-user-{id}"   # required; see core.policy.patterns
    subscribe = ["user:{id}"]       # each action key is a list of terms (core.policy.rules);
    publish = ["backend"]           # any one term grants; a missing key or [] means nobody
    client_events = ["subscriber"]  # `subscriber` (client_events only): any connection whose
    history = ["user:{id}"]         # subscription to the channel was authorized
    presence_info = ["name"]        # JWT claims copied into presence user_info; default []
    options = { }                   # optional free-form table, read by other gates, not here

Rules are tried in file order and the first whose pattern matches the channel decides; a channel
that no rule matches is denied. Every mistake (bad TOML, an unknown key or term, a malformed
pattern, a `hook` term with no hook, a hook that cannot be imported) stops loading with one
ConfigurationError line naming the source and, where there is one, the rule.
"""

from __future__ import annotations

import importlib
import inspect
import tomllib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from msgspec import Struct

from core.errors import ConfigurationError
from core.policy.decisions import Action
from core.policy.patterns import Pattern, PatternError
from core.policy.rules import ACTION_KEYS, Rule, Subscriber, parse_term

if TYPE_CHECKING:
    from core.policy.rules import Hook, Term

_TOP_KEYS = frozenset({"hook", "rule"})
_RULE_KEYS = frozenset({"pattern", "presence_info", "options", *ACTION_KEYS})


class PolicyDocument(Struct, frozen=True):
    """A checked policy source: its rules in order and its imported hook."""

    rules: tuple[Rule, ...]
    hook: Hook | None = None


class _RuleError(ValueError):
    """A problem inside one rule; the caller adds the source and the rule's position."""


def _string_list(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _RuleError(f'{key!r} must be a list of strings, for example {key} = ["user"]')
    return cast("list[str]", value)


def _parse_rule(raw: object, index: int) -> Rule:
    """One checked rule."""
    if not isinstance(raw, dict):
        raise _RuleError("must be a table: write [[rule]]")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        known = ", ".join(sorted(_RULE_KEYS))
        raise _RuleError(f"unknown key {unknown[0]!r} (known: {known})")
    text = raw.get("pattern")
    if not isinstance(text, str):
        raise _RuleError('needs pattern = "..."')
    try:
        compiled = Pattern.compile(text)
    except PatternError as exc:
        raise _RuleError(f"pattern {text!r}: {exc}") from exc
    permissions: dict[Action, tuple[Term, ...]] = {}
    for key, action in ACTION_KEYS.items():
        texts = _string_list(raw.get(key, []), key)
        try:
            permissions[action] = tuple(parse_term(t, compiled.placeholders) for t in texts)
        except ValueError as exc:
            raise _RuleError(f"{key}: {exc}") from exc
        if action is not Action.CLIENT_EVENT and any(
            isinstance(t, Subscriber) for t in permissions[action]
        ):
            # Being a subscriber is what a subscription proves; it cannot grant the subscription.
            raise _RuleError(
                f"{key}: the term 'subscriber' grants client events only: list it under "
                "client_events"
            )
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise _RuleError("'options' must be a table, for example options = { ttl = 60 }")
    return Rule(
        compiled=compiled,
        permissions=MappingProxyType(permissions),
        presence_info=tuple(_string_list(raw.get("presence_info", []), "presence_info")),
        options=MappingProxyType(options),
        index=index,
    )


def import_hook(spec: str) -> Hook:
    """Import `package.module:function`, raising ValueError that says why it cannot be used."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise ValueError(f"hook {spec!r} must look like 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:  # an import can fail with anything its module raises
        raise ValueError(f"hook {spec!r} cannot be imported: {exc}") from exc
    if not callable(target):
        raise ValueError(f"hook {spec!r} is not callable")
    if inspect.iscoroutinefunction(target):
        raise ValueError(f"hook {spec!r} is async; policy decisions are synchronous")
    return cast("Hook", target)


def parse_policy(text: str, *, source: str) -> PolicyDocument:
    """Parse and check a TOML policy, raising ConfigurationError naming `source` on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: invalid TOML: {exc}") from exc
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown top-level key {unknown[0]!r} (known: hook, [[rule]])"
        )
    raw_rules = data.get("rule")
    if not raw_rules:
        raise ConfigurationError(f"{source}: no [[rule]] tables: every channel would be denied")
    if not isinstance(raw_rules, list):
        raise ConfigurationError(f"{source}: 'rule' must be an array of tables: write [[rule]]")

    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_rules, start=1):
        where = f"{source}: rule #{index}"
        if isinstance(raw, dict) and isinstance(raw.get("pattern"), str):
            where += f" ({raw['pattern']})"
        try:
            rule = _parse_rule(raw, index)
        except _RuleError as exc:
            raise ConfigurationError(f"{where}: {exc}") from exc
        if rule.pattern in seen:
            raise ConfigurationError(
                f"{where}: repeats the pattern of rule #{seen[rule.pattern]}, so it never matches"
            )
        seen[rule.pattern] = index
        rules.append(rule)

    hook_name = data.get("hook")
    if hook_name is None:
        # A `hook` term without a hook is refused where rules meet their hook: Policy itself.
        return PolicyDocument(tuple(rules))
    if not isinstance(hook_name, str):
        raise ConfigurationError(f"{source}: hook must be a string 'package.module:function'")
    try:
        hook = import_hook(hook_name)
    except ValueError as exc:
        raise ConfigurationError(f"{source}: {exc}") from exc
    return PolicyDocument(tuple(rules), hook)
