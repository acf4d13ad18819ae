"""core.policy.grants: exact channels checked by the engine, open patterns with what shadows them.

(Provider-neutral; it lives here because the Ably capability is its first user.)
"""

from __future__ import annotations

import itertools
import random

from core.policy import Action, Deny, Policy
from core.policy.grants import MAX_CLAIM_VALUES, grants
from core.policy.loader import parse_policy
from core.principal import ANONYMOUS, Principal, PrincipalKind, user

BACKEND = Principal(PrincipalKind.BACKEND, "key:0123abcd")

OVERLAPPING = """
[[rule]]
pattern = "private-user-{id}"
subscribe = ["user:{id}"]
publish = ["backend"]

[[rule]]
pattern = "private-{name}"
publish = ["backend"]

[[rule]]
pattern = "{a}-log"
publish = ["backend"]

[[rule]]
pattern = "room-{a}-{b}"
publish = ["backend"]

[[rule]]
pattern = "announcements"
publish = ["backend"]

[[rule]]
pattern = "{name}"
publish = ["backend"]
"""


def _policy(text: str) -> Policy:
    return Policy(parse_policy(text, source="test").rules, "test")


def test_exact_channels_carry_every_action_the_engine_allows() -> None:
    found = grants(Policy.default(), user("alice"), channels=["news", "presence-lobby"])
    by_channel = {g.channel: g for g in found.channels}
    # Client events too: asked without a connection, `subscriber` grants whom subscribe grants
    # (the Ably capability leaves that term out: tests/unit/providers/ably/test_capability.py).
    assert by_channel["private-user-alice"].actions == {
        Action.SUBSCRIBE,
        Action.HISTORY,
        Action.CLIENT_EVENT,
    }
    assert by_channel["presence-lobby"].presence is True
    assert by_channel["news"].presence is False


def test_denied_named_channels_are_dropped() -> None:
    found = grants(Policy.default(), ANONYMOUS, channels=["private-room", "presence-x", "a:b"])
    assert found.channels == ()


def test_open_patterns_report_the_earlier_patterns_that_may_decide_first() -> None:
    found = grants(_policy(OVERLAPPING), BACKEND)
    shadows = {g.pattern.text: set(g.shadowed_by) for g in found.patterns}
    assert shadows["private-user-{id}"] == set()
    assert shadows["private-{name}"] == {"private-user-{id}"}
    assert shadows["{name}"] == {
        "private-user-{id}",
        "private-{name}",
        "{a}-log",
        "room-{a}-{b}",
        "announcements",
    }
    # "room-x-log" matches both, so "{a}-log" may shadow "room-{a}-{b}"; "private-" cannot.
    assert shadows["room-{a}-{b}"] == {"{a}-log"}
    assert "announcements" in {g.channel for g in found.channels}


def test_shadowed_by_is_never_missing_a_pattern_that_matches_the_same_channel() -> None:
    policy = _policy(OVERLAPPING)
    found = grants(policy, BACKEND)
    pieces = ["private", "user", "room", "log", "x", "y", "announcements", "-"]
    rng = random.Random(5)
    names = {"".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(3000)}
    names |= {
        "-".join(p) for p in itertools.product(["private", "room", "x"], ["user", "x", "log"])
    }
    for grant in found.patterns:
        position = next(i for i, r in enumerate(policy.rules) if r.index == grant.rule_index)
        for earlier, channel in itertools.product(policy.rules[:position], sorted(names)):
            if earlier.match(channel) is not None and grant.pattern.match(channel) is not None:
                assert earlier.pattern in grant.shadowed_by, (grant.pattern.text, channel)


def test_terms_bind_placeholders_from_the_principal() -> None:
    policy = _policy(
        '[[rule]]\npattern = "org-{org}-room-{room}"\nsubscribe = ["claim:org={org}"]\n\n'
        '[[rule]]\npattern = "dm-{a}-{b}"\nsubscribe = ["user:{a}", "user:{b}"]\n'
    )
    found = grants(policy, user("ann", org="acme"))
    texts = {g.pattern.text: g.open for g in found.patterns}
    assert texts == {
        "org-acme-room-{room}": ("room",),
        "dm-ann-{b}": ("b",),
        "dm-{a}-ann": ("a",),
    }


def test_terms_that_cannot_grant_report_nothing() -> None:
    policy = _policy(
        '[[rule]]\npattern = "ops-{x}"\nsubscribe = ["claim:role=admin", "user:bob"]\n'
    )
    assert grants(policy, user("ann", role="staff")).patterns == ()
    assert [g.pattern.text for g in grants(policy, user("ann", role="admin")).patterns] == [
        "ops-{x}"
    ]


def test_list_claims_are_enumerated_up_to_a_bound() -> None:
    policy = _policy('[[rule]]\npattern = "t-{t}"\nsubscribe = ["claim:teams={t}"]\n')
    many = user("ann", teams=[str(i) for i in range(MAX_CLAIM_VALUES + 50)])
    assert len(grants(policy, many).channels) == MAX_CLAIM_VALUES


def test_by_hook_marks_a_pattern_where_a_hook_grants_some_action() -> None:
    policy = Policy(
        parse_policy(
            '[[rule]]\npattern = "a-{x}"\nsubscribe = ["user"]\nhistory = ["hook"]\n\n'
            '[[rule]]\npattern = "b-{x}"\nsubscribe = ["user"]\n',
            source="test",
        ).rules,
        "test",
        hook=lambda *_: Deny("never"),
    )
    flags = {g.pattern.text: (g.by_hook, g.actions) for g in grants(policy, user("ann")).patterns}
    assert flags == {
        "a-{x}": (True, frozenset({Action.SUBSCRIBE, Action.HISTORY})),
        "b-{x}": (False, frozenset({Action.SUBSCRIBE})),
    }
