"""Compiling the channel policy to SQL (the database itself is exercised in tests/db)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.policy import Policy
from core.policy.patterns import Pattern
from providers.supabase.rls import MIGRATION_SUFFIX, compile_policy, topic_regex, write_migration

ROOT = Path(__file__).resolve().parents[4]
MIGRATIONS = ROOT / "infra" / "supabase" / "migrations"
CHANNELS = (
    "news", "a", "private-user-alice", "private-user-a-b-c", "private-user-", "presence-x-y",
    "feed.a", "feedXa", "feed.", "roomaxbxc", "room-a", "a.b@c,d;e=f_g", "x-", "-x", "",
    "private-org-acme-1-2", "private-org--x", "ñ", "a b", "news\n",
)  # fmt: skip
PATTERNS = (
    "{name}", "private-user-{id}", "presence-{a}-{b}", "feed.{x}", "room{a}x{b}",
    "private-org-{org}-{rest}", "news", "private-", "{a}-{b}",
)  # fmt: skip


def _policy(text: str) -> Policy:
    return Policy.from_toml(text, source="test.toml")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_sql_regex_accepts_exactly_what_the_pattern_accepts(pattern: str) -> None:
    compiled = Pattern.compile(pattern)
    regex = topic_regex(pattern)
    assert regex.startswith("^")
    assert regex.endswith("$")
    body = re.compile(regex[1:-1])  # Python's `$` would also match before a final newline
    for channel in CHANNELS:
        found = body.fullmatch(channel)
        assert (found is None) == (compiled.match(channel) is None), channel
        if found is not None:
            assert list(found.groups()) == list((compiled.match(channel) or {}).values())


def test_a_literal_dot_is_bracketed_not_backslashed() -> None:
    assert topic_regex("feed.{x}") == "^feed[.]([-a-zA-Z0-9_=@,.;]+)$"
    assert (
        "\\" not in compile_policy(_policy('[[rule]]\npattern = "a.b"\nsubscribe = ["user"]')).sql
    )


def test_the_committed_migration_is_the_default_policy_compiled() -> None:
    committed = sorted(MIGRATIONS.glob("*" + MIGRATION_SUFFIX))
    assert committed, "run `relay supabase policies` to generate it"
    assert committed[-1].read_text(encoding="utf-8") == compile_policy(Policy.default()).sql


def test_rules_become_case_branches_in_policy_order() -> None:
    sql = compile_policy(Policy.default()).sql
    receive = sql[sql.index('"realtime-relay: receive (authenticated)"') :]
    receive = receive[: receive.index(");")]
    order = [
        receive.index(f"when r.topic ~ '{topic_regex(rule.pattern)}'")
        for rule in Policy.default().rules
    ]
    assert order == sorted(order)
    assert "auth.uid()" not in sql  # it casts sub to uuid; relay user ids are any text


def test_roles_and_commands() -> None:
    sql = compile_policy(Policy.default()).sql
    assert 'create policy "realtime-relay: receive (anon)" on realtime.messages' in sql
    assert "as permissive for select to anon" in sql
    assert "as permissive for insert to authenticated" in sql
    # The default policy's client events (`subscriber`) are not compiled, so nobody broadcasts;
    # anon tracks no presence. The one insert policy is presence on presence- topics.
    assert '"realtime-relay: send (anon)"' not in sql
    assert sql.count("create policy") == 3
    send = sql[sql.index('"realtime-relay: send (authenticated)"') :]
    send = send[: send.index(");")]
    assert "extension = 'broadcast'" not in send
    assert "extension = 'presence'" in send


SENDERS = """
[[rule]]
pattern = "private-lead-{x}"
subscribe = ["user"]
client_events = ["subscriber", "claim:crew=lead"]

[[rule]]
pattern = "private-{x}"
subscribe = ["user"]
client_events = ["subscriber"]
"""


def test_subscriber_is_not_compiled_and_says_why() -> None:
    compiled = compile_policy(_policy(SENDERS))
    assert compiled.warnings == tuple(
        f"rule #{n} ({pattern}): client events for 'subscriber' are not compiled: a broadcast "
        "cannot be held to client-* names, so sending is denied (name who may send, such as "
        "'user', to let them broadcast any event)"
        for n, pattern in ((1, "private-lead-{x}"), (2, "private-{x}"))
    )
    # Only the term naming who sends grants the broadcast insert, on its own rule's topics.
    send = compiled.sql[compiled.sql.index('"realtime-relay: send (authenticated)"') :]
    send = send[: send.index(");")]
    assert "then case jsonb_typeof(r.jwt -> 'crew')" in send
    assert "when r.topic ~ '^private-([-a-zA-Z0-9_=@,.;]+)$' then false" in send
    assert '"realtime-relay: send (anon)"' not in compiled.sql


def test_subscriber_alone_creates_no_broadcast_insert() -> None:
    rule = '[[rule]]\npattern = "private-{x}"\nsubscribe = ["user"]\nclient_events = ["subscriber"]'
    sql = compile_policy(_policy(rule)).sql
    send = sql[sql.index('"realtime-relay: send (authenticated)"') :]
    send = send[: send.index(");")]
    assert "extension = 'broadcast'" not in send  # only presence tracking is inserted


def test_a_policy_granting_clients_nothing_creates_no_policy() -> None:
    sql = compile_policy(_policy('[[rule]]\npattern = "{x}"\npublish = ["backend"]')).sql
    assert "create policy" not in sql
    assert "drop policy %I" in sql  # the drop block still clears an earlier run's policies


def test_values_are_quoted() -> None:
    sql = compile_policy(
        _policy('[[rule]]\npattern = "private-{x}"\nsubscribe = ["claim:it\'s=o\'k-{x}"]')
    ).sql
    assert "r.jwt -> 'it''s'" in sql
    assert "'o''k-' || (regexp_match(r.topic," in sql


def test_warnings_name_the_rules_sql_cannot_honour() -> None:
    policy = _policy(
        'hook = "tests.db.test_supabase_rls:hook"\n'
        '[[rule]]\npattern = "private-h-{x}"\nsubscribe = ["hook"]\n'
        '[[rule]]\npattern = "private-r"\nclient_events = ["claim:aud=x"]\n'
        '[[rule]]\npattern = "news-{x}"\nsubscribe = ["user"]\nclient_events = ["anyone"]\n'
        '[[rule]]\npattern = "private-ok"\nsubscribe = ["user"]\n'
    )
    warnings = compile_policy(policy).warnings
    assert len(warnings) == 3
    assert "rule #1 (private-h-{x})" in warnings[0]
    assert "hook" in warnings[0]
    assert "rule #2 (private-r)" in warnings[1]
    assert "'aud'" in warnings[1]
    assert "rule #3 (news-{x}) can match public channels" in warnings[2]
    assert "may subscribe there" in warnings[2]
    assert all(f"-- WARNING: {w}" in compile_policy(policy).sql for w in warnings)


def test_write_migration_writes_once_per_change(tmp_path: Path) -> None:
    first = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    path, compiled, written = write_migration(Policy.default(), tmp_path, now=first)
    assert written
    assert path.name == "20260102030405" + MIGRATION_SUFFIX
    assert path.read_text(encoding="utf-8") == compiled.sql
    again, _, written = write_migration(Policy.default(), tmp_path, now=first)
    assert (again, written) == (path, False)
    other = _policy('[[rule]]\npattern = "private-{x}"\nsubscribe = ["user"]')
    changed, _, written = write_migration(other, tmp_path, now=first)
    assert written
    assert changed.name == "20260102030406" + MIGRATION_SUFFIX  # same second: the next one
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, changed.name]
