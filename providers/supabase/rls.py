"""The relay's channel policy compiled to Row Level Security policies on `realtime.messages`.

Supabase Realtime authorizes a private channel by running, as the client's role and with its JWT
claims in `request.jwt.claims`, a select (may receive) and an insert (may send) on
`realtime.messages`, whose `extension` is 'broadcast' or 'presence' and whose topic is
`realtime.topic()`. The relay's actions map onto those checks as:

    select, broadcast         subscribe
    select, presence          subscribe, on presence- channels only
    insert, broadcast         client_events (a client sending on its socket)
    insert, presence          subscribe, on presence- channels only (tracking is joining)

`publish` is not compiled: backends publish through the relay, whose service role key bypasses
RLS. Each check is one CASE over the rules in policy order, so the first rule whose pattern matches
the topic decides, as in `Policy.decide`. Terms become: anyone -> true (anon and authenticated),
user -> a signed-in `sub`, user:V -> `sub` = V, claim:N=V -> the claim equals V or, for a list,
holds it (strings and integers only), backend -> false (service role only), hook -> false with a
warning, as does a claim that Supabase reserves (`role`, `aud`, ...), and so does `subscriber`:
it grants client events as Pusher does, `client-*` names only, and an insert that lets a client
broadcast lets it send any event name, what its topic's other clients would take for a backend
event (the policy's `publish`, which the service role keeps). Naming who may send (`user`, ...)
grants the insert, as the operator chose.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from msgspec import Struct

from core.policy import Action
from core.policy.rules import Anyone, AnyUser, Backend, ClaimIs, HookTerm, Subscriber, UserIs
from providers.supabase.tokens import RESERVED_CLAIMS

if TYPE_CHECKING:
    from pathlib import Path

    from core.policy import Policy, Rule, Term

POLICY_PREFIX = "realtime-relay:"
MIGRATION_SUFFIX = "_realtime_relay_policies.sql"
PRESENCE_PREFIX = "presence-"
PROTECTED_PREFIXES = ("private-", "presence-")
ANON, AUTHENTICATED = "anon", "authenticated"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The placeholder alphabets of core.policy.patterns, as POSIX bracket expressions PostgreSQL reads
# the same way Python does: inside the pattern no dash, at its end dashes too.
_SEGMENT = "[a-zA-Z0-9_=@,.;]+"
_TAIL = "[-a-zA-Z0-9_=@,.;]+"
# The topic, the claims, and `sub` only when it is a non-empty string (as the relay requires).
_ROW = (
    "(select t.topic, t.jwt,\n"
    "      case when jsonb_typeof(t.jwt -> 'sub') = 'string' then nullif(t.jwt ->> 'sub', '') end"
    " as sub\n      from (select realtime.topic() as topic, auth.jwt() as jwt) as t) as r"
)
_BROADCAST = "realtime.messages.extension = 'broadcast'"
_PRESENCE = "realtime.messages.extension = 'presence'"
_ON_PRESENCE = f"starts_with((select realtime.topic()), '{PRESENCE_PREFIX}')"


class Compiled(Struct, frozen=True):
    """The migration's SQL and the warnings about what SQL could not express."""

    sql: str
    warnings: tuple[str, ...]


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _pieces(text: str) -> list[tuple[bool, str]]:
    """(is_placeholder, text) runs of an already validated pattern or template."""
    pieces: list[tuple[bool, str]] = []
    pos = 0
    for found in _PLACEHOLDER.finditer(text):
        if found.start() > pos:
            pieces.append((False, text[pos : found.start()]))
        pieces.append((True, found.group(1)))
        pos = found.end()
    if pos < len(text):
        pieces.append((False, text[pos:]))
    return pieces


def topic_regex(pattern: str) -> str:
    """The pattern as an anchored regular expression, one capture group per placeholder."""
    pieces = _pieces(pattern)
    parts = []
    for i, (is_placeholder, text) in enumerate(pieces):
        if is_placeholder:
            parts.append("(" + (_TAIL if i == len(pieces) - 1 else _SEGMENT) + ")")
        else:
            # "." is the one regex metacharacter among channel characters; a bracket keeps it
            # literal without a backslash, whatever standard_conforming_strings says.
            parts.append(text.replace(".", "[.]"))
    return "^" + "".join(parts) + "$"


def _claim_is_comparable(value: str) -> str:
    # A string, or a number written as an integer: what the relay compares (never bool or null).
    return (
        f"(jsonb_typeof({value}) = 'string' or (jsonb_typeof({value}) = 'number' "
        f"and ({value})::text ~ '^-?[0-9]+$'))"
    )


class _RuleSql:
    """SQL for one rule's match and terms."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.regex = topic_regex(rule.pattern)

    @property
    def label(self) -> str:
        return f"rule #{self.rule.index} ({self.rule.pattern})"

    def value(self, template: str) -> str:
        """A term value with the placeholders bound from the topic."""
        names = self.rule.compiled.placeholders
        parts = [
            f"(regexp_match(r.topic, {quote(self.regex)}))[{names.index(text) + 1}]"
            if is_placeholder
            else quote(text)
            for is_placeholder, text in _pieces(template)
        ]
        return " || ".join(parts) if len(parts) > 1 else parts[0]

    def term(self, term: Term, role: str, warn: list[str], action: Action) -> str:
        """A boolean SQL expression granting what `term` grants, for callers of `role`."""
        if isinstance(term, Anyone):
            return "true"
        if isinstance(term, HookTerm):
            warn.append(
                f"{self.label}: the hook cannot run in SQL; {action.value} it grants is denied"
            )
            return "false"
        if isinstance(term, Subscriber):
            warn.append(
                f"{self.label}: client events for 'subscriber' are not compiled: a broadcast "
                "cannot be held to client-* names, so sending is denied (name who may send, "
                "such as 'user', to let them broadcast any event)"
            )
            return "false"
        if role == ANON or isinstance(term, Backend):
            return "false"  # anon holds no user; backends use the service role, which skips RLS
        if isinstance(term, AnyUser):
            return "r.sub is not null"
        if isinstance(term, UserIs):
            return f"r.sub = {self.value(term.value.text)}"
        if isinstance(term, ClaimIs):
            if term.claim == "sub":
                return f"r.sub = {self.value(term.value.text)}"
            if term.claim in RESERVED_CLAIMS:
                warn.append(
                    f"{self.label}: claim {term.claim!r} means something else in a Supabase JWT; "
                    f"{action.value} granted by {term.text} is denied (rename the claim)"
                )
                return "false"
            return self._claim(term.claim, self.value(term.value.text))
        warn.append(f"{self.label}: unknown term {term.text!r} is denied")
        return "false"

    @staticmethod
    def _claim(name: str, expected: str) -> str:
        claim = f"r.jwt -> {quote(name)}"
        items = f"jsonb_array_elements({claim}) as c(v)"
        held = f"{_claim_is_comparable('c.v')} and c.v #>> '{{}}' = {expected}"
        scalar = f"{_claim_is_comparable(claim)} and r.jwt ->> {quote(name)} = {expected}"
        listed = f"exists (select 1 from {items} where {held})"  # noqa: S608 - quoted DDL
        return f"case jsonb_typeof({claim}) when 'array' then {listed} else {scalar} end"


def _decision(rules: list[_RuleSql], action: Action, role: str, warn: list[str]) -> str | None:
    """First-match CASE over the rules deciding `action` for `role`; None when it grants nothing."""
    branches = []
    if action is Action.SUBSCRIBE:
        # As Policy: a presence member needs a signed-in user whatever the terms say.
        needs_user = "" if role == ANON else " and r.sub is null"
        branches.append(f"when starts_with(r.topic, '{PRESENCE_PREFIX}'){needs_user} then false")
    granted = False
    for rule in rules:
        terms = [rule.term(t, role, warn, action) for t in rule.rule.terms(action)]
        useful = [t for t in dict.fromkeys(terms) if t != "false"]
        grant = "true" if "true" in useful else " or ".join(useful) or "false"
        granted = granted or bool(useful)
        branches.append(f"when r.topic ~ {quote(rule.regex)} then {grant}")
    if not granted:
        return None
    body = "\n      ".join(branches)
    cases = f"case\n      {body}\n      else false end"
    return f"coalesce((select {cases}\n    from {_ROW}), false)"  # noqa: S608 - quoted DDL


def _public_gaps(rules: list[_RuleSql]) -> list[str]:
    """Rules that can match public channels and grant less than everyone there."""
    found = []
    for rule in rules:
        prefix = _pieces(rule.rule.pattern)[0]
        if not prefix[0] and prefix[1].startswith(PROTECTED_PREFIXES):
            continue
        narrower = [
            what
            for action, what in ((Action.SUBSCRIBE, "subscribe"), (Action.CLIENT_EVENT, "send"))
            if not any(isinstance(t, Anyone) for t in rule.rule.terms(action))
        ]
        if narrower:
            found.append(
                f"{rule.label} can match public channels, which Supabase does not authorize: "
                f"anyone with the anon key may {' and '.join(narrower)} there"
            )
    return found


def _policy(name: str, command: str, role: str, clause: str, expression: str) -> str:
    return (
        f"create policy {quote_ident(POLICY_PREFIX + ' ' + name)} on realtime.messages\n"
        f"  as permissive for {command} to {role}\n  {clause} (\n    {expression}\n  );"
    )


def quote_ident(name: str) -> str:
    """A SQL identifier in double quotes."""
    return '"' + name.replace('"', '""') + '"'


def compile_policy(policy: Policy) -> Compiled:
    """The migration SQL for `policy`, and warnings naming each rule SQL cannot honour fully."""
    rules = [_RuleSql(rule) for rule in policy.rules]
    warn: list[str] = []
    statements = []
    for role in (ANON, AUTHENTICATED):
        receive = _decision(rules, Action.SUBSCRIBE, role, warn)  # warnings repeat: deduplicated
        send = _decision(rules, Action.CLIENT_EVENT, role, warn)
        # Presence is by user id, so anon never receives or tracks it (Policy says the same).
        presence = role == AUTHENTICATED and receive is not None
        if receive is not None:
            kinds = (
                f"({_BROADCAST} or ({_PRESENCE} and {_ON_PRESENCE}))" if presence else _BROADCAST
            )
            clause = f"{kinds}\n    and {receive}"
            statements.append(_policy(f"receive ({role})", "select", role, "using", clause))
        sends = [f"({_BROADCAST} and {send})"] if send is not None else []
        if presence:
            sends.append(f"({_PRESENCE} and {_ON_PRESENCE}\n    and {receive})")
        if sends:
            clause = "\n    or ".join(sends)
            statements.append(_policy(f"send ({role})", "insert", role, "with check", clause))
    warnings = tuple(dict.fromkeys([*warn, *_public_gaps(rules)]))
    return Compiled(_render(policy, rules, statements, warnings), warnings)


def _render(
    policy: Policy, rules: list[_RuleSql], statements: list[str], warnings: tuple[str, ...]
) -> str:
    lines = [
        "-- realtime-relay: Realtime Authorization compiled from the channel policy",
        f"-- source: {policy.source}",
        "-- Generated by `relay supabase policies`: change the policy and generate again.",
        "-- select = may receive (broadcast; presence on presence- topics);",
        "-- insert = may send (broadcast: client_events; presence: subscribe on presence- topics).",
        "-- First matching rule decides; a topic no rule matches is denied.",
        *(f"-- {rule.label} -> {rule.regex}" for rule in rules),
        *(f"-- WARNING: {text}" for text in warnings),
        "",
        "alter table realtime.messages enable row level security;",
        "",
        "-- Idempotent: drop every policy an earlier run of this command created.",
        "do $relay$",
        "declare existing record;",
        "begin",
        "  for existing in select policyname from pg_policies",
        "    where schemaname = 'realtime' and tablename = 'messages'",
        f"      and starts_with(policyname, {quote(POLICY_PREFIX)})",
        "  loop",
        "    execute format('drop policy %I on realtime.messages', existing.policyname);",
        "  end loop;",
        "end $relay$;",
        "",
        *(statement + "\n" for statement in statements),
        "-- Other permissive policies on realtime.messages widen what the relay policy grants.",
        "do $relay$",
        "declare others text;",
        "begin",
        "  select string_agg(policyname, ', ') into others from pg_policies",
        "    where schemaname = 'realtime' and tablename = 'messages'",
        "      and permissive = 'PERMISSIVE'",
        f"      and not starts_with(policyname, {quote(POLICY_PREFIX)});",
        "  if others is not null then",
        "    raise warning 'realtime.messages has other policies (%), which also grant', others;",
        "  end if;",
        "end $relay$;",
    ]
    return "\n".join(lines) + "\n"


def write_migration(
    policy: Policy, directory: Path, *, now: datetime | None = None
) -> tuple[Path, Compiled, bool]:
    """Write `<timestamp>_realtime_relay_policies.sql` into `directory` unless the newest such
    migration already holds the same SQL; return its path, the compiled result, and whether it
    was written."""
    compiled = compile_policy(policy)
    directory.mkdir(parents=True, exist_ok=True)
    earlier = sorted(directory.glob("*" + MIGRATION_SUFFIX))
    if earlier and earlier[-1].read_text(encoding="utf-8") == compiled.sql:
        return earlier[-1], compiled, False
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    path = directory / (moment.strftime("%Y%m%d%H%M%S") + MIGRATION_SUFFIX)
    while path.exists():  # two different policies within one second: keep both, in order
        moment += timedelta(seconds=1)
        path = directory / (moment.strftime("%Y%m%d%H%M%S") + MIGRATION_SUFFIX)
    path.write_text(compiled.sql, encoding="utf-8")
    return path, compiled, True
