"""The policy gate's decisions: the built-in default, terms, presence, hooks and explanations."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import pytest

from core.errors import ConfigurationError
from core.policy import Action, Allow, AllowPresence, Decision, Deny, Policy
from core.policy.loader import parse_policy
from core.policy.rules import Context, Subscriber
from core.principal import ANONYMOUS, Principal, PrincipalKind, user

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from core.policy import Hook

BACKEND = Principal(PrincipalKind.BACKEND, "billing")
OWNER = user("42", name="Ann", email="ann@example.com")
OTHER = user("7", name="Bob")
UUID = "0b7e2f4c-1a2b-4c3d-8e9f-001122334455"

S, P, C, H = Action.SUBSCRIBE, Action.PUBLISH, Action.CLIENT_EVENT, Action.HISTORY
ALLOW, PRESENCE, DENY_401, DENY_403 = "allow", "presence", "401", "403"

# (principal, action, channel, expected) for every default rule, every kind of caller, every action.
DEFAULT_CASES: list[tuple[Principal, Action, str, str]] = [
    # private-user-{id}: the owner subscribes and reads history; only a backend publishes.
    (ANONYMOUS, S, "private-user-42", DENY_401),
    (OWNER, S, "private-user-42", ALLOW),
    (OTHER, S, "private-user-42", DENY_403),
    (BACKEND, S, "private-user-42", DENY_403),
    (user(UUID), S, f"private-user-{UUID}", ALLOW),
    (OWNER, S, f"private-user-{UUID}", DENY_403),
    (ANONYMOUS, P, "private-user-42", DENY_401),
    (OWNER, P, "private-user-42", DENY_403),
    (BACKEND, P, "private-user-42", ALLOW),
    # Client events go to subscribers; asked without a connection, to whom subscribe is granted.
    (ANONYMOUS, C, "private-user-42", DENY_401),
    (OWNER, C, "private-user-42", ALLOW),
    (OTHER, C, "private-user-42", DENY_403),
    (BACKEND, C, "private-user-42", DENY_403),
    (ANONYMOUS, H, "private-user-42", DENY_401),
    (OWNER, H, "private-user-42", ALLOW),
    (OTHER, H, "private-user-42", DENY_403),
    (BACKEND, H, "private-user-42", DENY_403),
    # private-encrypted-{name}: any user subscribes; no history.
    (ANONYMOUS, S, "private-encrypted-vault", DENY_401),
    (OTHER, S, "private-encrypted-vault", ALLOW),
    (BACKEND, S, "private-encrypted-vault", DENY_403),
    (BACKEND, P, "private-encrypted-vault", ALLOW),
    (OTHER, P, "private-encrypted-vault", DENY_403),
    (OTHER, C, "private-encrypted-vault", DENY_403),
    (OTHER, H, "private-encrypted-vault", DENY_403),
    # presence-{name}: any user joins as a member; anonymous and backends cannot.
    (ANONYMOUS, S, "presence-lobby", DENY_401),
    (OWNER, S, "presence-lobby", PRESENCE),
    (BACKEND, S, "presence-lobby", DENY_403),
    (BACKEND, P, "presence-lobby", ALLOW),
    (OWNER, P, "presence-lobby", DENY_403),
    (OWNER, C, "presence-lobby", ALLOW),
    (ANONYMOUS, C, "presence-lobby", DENY_401),
    (BACKEND, C, "presence-lobby", DENY_403),
    (OWNER, H, "presence-lobby", DENY_403),
    # private-{name}: any user subscribes.
    (ANONYMOUS, S, "private-orders", DENY_401),
    (OTHER, S, "private-orders", ALLOW),
    (BACKEND, S, "private-orders", DENY_403),
    (ANONYMOUS, P, "private-orders", DENY_401),
    (BACKEND, P, "private-orders", ALLOW),
    (OTHER, C, "private-orders", ALLOW),
    (ANONYMOUS, C, "private-orders", DENY_401),
    (OTHER, H, "private-orders", DENY_403),
    # A bare kind prefix is not a public channel.
    (OWNER, S, "private-", DENY_403),
    (ANONYMOUS, S, "private-", DENY_403),
    (OWNER, S, "presence-", DENY_403),
    # {name}: public channels are open to all, history included; publishing needs a backend.
    (ANONYMOUS, S, "news", ALLOW),
    (OWNER, S, "news", ALLOW),
    (BACKEND, S, "news", ALLOW),
    (ANONYMOUS, P, "news", DENY_401),
    (OWNER, P, "news", DENY_403),
    (BACKEND, P, "news", ALLOW),
    (ANONYMOUS, C, "news", DENY_403),
    (OWNER, C, "news", DENY_403),
    (ANONYMOUS, H, "news-eu-west", ALLOW),
    (BACKEND, H, "news", ALLOW),
    # No rule matches a name outside the channel alphabet: denied, and no login would help.
    (ANONYMOUS, S, "news feed", DENY_403),
    (OWNER, S, "news#feed", DENY_403),
    (BACKEND, P, "", DENY_403),
]


def _outcome(decision: Decision) -> str:
    if isinstance(decision, AllowPresence):
        return PRESENCE
    if isinstance(decision, Allow):
        return ALLOW
    return DENY_401 if decision.unauthenticated else DENY_403


def _case_id(case: tuple[Principal, Action, str, str]) -> str:
    principal, action, channel, expected = case
    return f"{principal.describe()}-{action.value}-{channel or 'empty'}-{expected}"


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=[_case_id(c) for c in DEFAULT_CASES])
def test_default_policy(case: tuple[Principal, Action, str, str]) -> None:
    principal, action, channel, expected = case
    assert _outcome(Policy.default().decide(principal, action, channel)) == expected


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=[_case_id(c) for c in DEFAULT_CASES])
def test_decide_equals_explain_decision(case: tuple[Principal, Action, str, str]) -> None:
    principal, action, channel, _ = case
    policy = Policy.default()
    assert (
        policy.decide(principal, action, channel)
        == policy.explain(principal, action, channel).decision
    )


def test_action_values_are_the_wire_names() -> None:
    assert [a.value for a in Action] == ["subscribe", "publish", "client_event", "history"]
    assert Action("client_event") is Action.CLIENT_EVENT


def test_default_rules_in_order() -> None:
    policy = Policy.default()
    assert policy.source == "built-in default"
    assert [rule.pattern for rule in policy.rules] == [
        "private-user-{id}",
        "private-encrypted-{name}",
        "presence-{name}",
        "private-{name}",
        "private-",
        "presence-",
        "{name}",
    ]
    assert all(rule.terms(P)[0].text == "backend" for rule in policy.rules)
    # Client events as a Pusher app with them enabled: subscribers of private and presence
    # channels, never encrypted ones, never public ones.
    assert {rule.pattern: [t.text for t in rule.terms(C)] for rule in policy.rules} == {
        "private-user-{id}": ["subscriber"],
        "private-encrypted-{name}": [],
        "presence-{name}": ["subscriber"],
        "private-{name}": ["subscriber"],
        "private-": [],
        "presence-": [],
        "{name}": [],
    }


# What the session asks for a client event: the sender is a connection subscribed to the channel,
# signed in or not (Laravel Echo's socket never signs in; its subscription was signed).
SUBSCRIBED_CASES: list[tuple[Principal, str, str]] = [
    (ANONYMOUS, "private-orders", ALLOW),
    (ANONYMOUS, "private-user-42", ALLOW),
    (OWNER, "presence-lobby", ALLOW),
    (ANONYMOUS, "private-encrypted-vault", DENY_403),
    (ANONYMOUS, "news", DENY_403),
    (ANONYMOUS, "private-", DENY_403),
]


@pytest.mark.parametrize(("principal", "channel", "expected"), SUBSCRIBED_CASES)
def test_default_policy_lets_any_subscriber_send_client_events(
    principal: Principal, channel: str, expected: str
) -> None:
    decision = Policy.default().decide(principal, C, channel, subscribed=True)
    assert _outcome(decision) == expected
    assert decision == Policy.default().explain(principal, C, channel, subscribed=True).decision


def test_subscriber_on_a_socket_is_the_authorized_subscription() -> None:
    decision = Policy.default().decide(ANONYMOUS, C, "private-orders", subscribed=True)
    assert decision == Allow("private-{name}", "subscriber grants client_event to anonymous")
    explained = Policy.default().explain(ANONYMOUS, C, "private-orders", subscribed=True)
    assert explained.terms == [
        ("subscriber", "yes: the connection's subscription to the channel was authorized")
    ]


def test_subscriber_without_a_connection_asks_the_rules_subscribe() -> None:
    policy = Policy.default()
    assert policy.explain(OWNER, C, "private-user-42").terms == [
        (
            "subscriber",
            "yes: user '42' may subscribe (user:{id} grants subscribe to user '42')",
        )
    ]
    assert policy.explain(OTHER, C, "private-user-42").terms == [
        (
            "subscriber",
            "no: user '7' may not subscribe (rule private-user-{id} does not grant subscribe "
            "to user '7': user '7' is not '42')",
        )
    ]


def test_subscriber_needs_the_presence_member_a_subscription_needs() -> None:
    # Outside a socket, the engine's own presence rule applies to being a subscriber too.
    decision = Policy.default().decide(BACKEND, C, "presence-lobby")
    assert isinstance(decision, Deny)
    assert "presence channels need a signed-in user" in decision.reason


def test_subscriber_grants_nothing_but_client_events() -> None:
    # The loader refuses it elsewhere; a rule built by hand still grants nothing with it.
    term = Subscriber("subscriber")
    for action in (S, P, H):
        verdict = term.evaluate(Context(OWNER, action, "private-x", {}, None))
        assert verdict.granted is False
        assert verdict.detail == "subscriber grants client events only"


def test_subscriber_is_one_term_among_others() -> None:
    policy = _policy(
        '[[rule]]\npattern = "private-{x}"\nsubscribe = ["user"]\n'
        'client_events = ["claim:role=lead", "subscriber"]'
    )
    lead = user("1", role="lead")
    assert _outcome(policy.decide(lead, C, "private-a")) == ALLOW
    assert _outcome(policy.decide(ANONYMOUS, C, "private-a", subscribed=True)) == ALLOW
    # With client events off, a subscription grants none.
    off = _policy('[[rule]]\npattern = "private-{x}"\nsubscribe = ["user"]\nclient_events = []')
    assert _outcome(off.decide(OWNER, C, "private-a", subscribed=True)) == DENY_403


def test_default_policy_is_parsed_once() -> None:
    assert Policy.default() is Policy.default()


def test_rule_for_returns_the_first_matching_rule() -> None:
    policy = Policy.default()
    rule = policy.rule_for("private-encrypted-x")
    assert rule is not None
    assert rule.pattern == "private-encrypted-{name}"
    assert rule.index == 2
    assert policy.rule_for("not a channel") is None


def test_deny_names_the_rule_and_the_failed_term() -> None:
    decision = Policy.default().decide(OTHER, S, "private-user-42")
    assert decision == Deny(
        "rule private-user-{id} does not grant subscribe to user '7': user '7' is not '42'",
        rule="private-user-{id}",
        unauthenticated=False,
    )


def test_unmatched_channel_is_denied_by_default() -> None:
    decision = Policy.default().decide(OWNER, S, "a b")
    assert decision == Deny("no rule matches channel 'a b'", rule=None, unauthenticated=False)


def test_presence_copies_only_listed_claims() -> None:
    decision = Policy.default().decide(OWNER, S, "presence-lobby")
    assert isinstance(decision, AllowPresence)
    assert decision.user_id == "42"
    assert decision.rule == "presence-{name}"
    assert dict(decision.user_info) == {"name": "Ann"}  # email is not in presence_info


def test_presence_omits_a_missing_claim() -> None:
    decision = Policy.default().decide(user("9"), S, "presence-lobby")
    assert isinstance(decision, AllowPresence)
    assert dict(decision.user_info) == {}


def test_presence_needs_a_user_even_when_anyone_may() -> None:
    policy = _policy(
        '[[rule]]\npattern = "presence-{x}"\nsubscribe = ["anyone", "backend"]\n'
        'publish = ["backend"]'
    )
    assert policy.decide(ANONYMOUS, S, "presence-a") == Deny(
        "presence channels need a signed-in user", rule="presence-{x}", unauthenticated=True
    )
    backend = policy.decide(BACKEND, S, "presence-a")
    assert isinstance(backend, Deny)
    assert not backend.unauthenticated
    # Presence only shapes subscriptions: publishing stays an ordinary grant.
    assert policy.decide(BACKEND, P, "presence-a") == Allow(
        "presence-{x}", "backend grants publish to backend 'billing'"
    )


def test_decisions_have_no_truth_value() -> None:
    deny = Policy.default().decide(ANONYMOUS, P, "news")
    allow = Policy.default().decide(ANONYMOUS, S, "news")
    with pytest.raises(TypeError, match="no truth value"):
        bool(deny)
    with pytest.raises(TypeError, match="no truth value"):
        bool(allow)


def _policy(text: str, hook: Callable[..., object] | None = None) -> Policy:
    # Rules from TOML, hook handed in directly so each test can watch its own calls.
    # Hooks under test may return anything, so they are typed wider than Hook on purpose.
    return Policy(
        parse_policy(text, source="test.toml").rules, "test.toml", cast("Hook | None", hook)
    )


def test_first_matching_rule_decides_without_fall_through() -> None:
    policy = _policy(
        '[[rule]]\npattern = "room-{id}"\nsubscribe = ["backend"]\n'
        '[[rule]]\npattern = "{name}"\nsubscribe = ["anyone"]'
    )
    decision = policy.decide(OWNER, S, "room-1")
    assert isinstance(decision, Deny)
    assert decision.rule == "room-{id}"
    assert isinstance(policy.decide(OWNER, S, "lobby"), Allow)


def test_terms_are_ored_and_tried_in_order() -> None:
    policy = _policy('[[rule]]\npattern = "doc-{id}"\nsubscribe = ["user:admin", "user:{id}"]')
    explanation = policy.explain(user("5"), S, "doc-5")
    assert explanation.terms == [
        ("user:admin", "no: user '5' is not 'admin'"),
        ("user:{id}", "yes: user '5' is '5'"),
    ]
    assert explanation.decision == Allow("doc-{id}", "user:{id} grants subscribe to user '5'")
    assert isinstance(policy.decide(user("admin"), S, "doc-5"), Allow)


def test_user_id_comparison_is_exact() -> None:
    policy = _policy('[[rule]]\npattern = "u-{id}"\nsubscribe = ["user:{id}"]')
    assert isinstance(policy.decide(user("abc"), S, "u-ABC"), Deny)
    assert isinstance(policy.decide(user("1"), S, "u-01"), Deny)


CLAIM_POLICY = """
[[rule]]
pattern = "team-{team}"
subscribe = ["claim:teams={team}"]
[[rule]]
pattern = "admin"
subscribe = ["claim:role=admin"]
[[rule]]
pattern = "level"
subscribe = ["claim:level=3"]
[[rule]]
pattern = "flag"
subscribe = ["claim:beta=True"]
[[rule]]
pattern = "none"
subscribe = ["claim:org=None"]
"""


@pytest.mark.parametrize(
    ("claims", "channel", "allowed"),
    [
        ({"teams": ["red", "blue"]}, "team-red", True),
        ({"teams": ["red", "blue"]}, "team-green", False),
        ({"teams": "red"}, "team-red", True),
        ({"teams": [7, "x"]}, "team-7", True),  # ints in a list compare as strings
        ({"teams": [True]}, "team-True", False),  # a bool never compares as text
        ({"role": "admin"}, "admin", True),
        ({"role": "Admin"}, "admin", False),
        ({"role": ["user", "admin"]}, "admin", True),
        ({}, "admin", False),
        ({"level": 3}, "level", True),
        ({"level": "3"}, "level", True),
        ({"level": 3.0}, "level", False),  # only str and int compare
        ({"beta": True}, "flag", False),
        ({"beta": "True"}, "flag", True),
        ({"org": None}, "none", False),
        ({"role": {"admin": True}}, "admin", False),
    ],
)
def test_claim_terms(claims: dict[str, Any], channel: str, allowed: bool) -> None:
    decision = _policy(CLAIM_POLICY).decide(user("1", **claims), S, channel)
    assert isinstance(decision, Allow) is allowed


def test_claim_term_needs_a_user() -> None:
    decision = _policy(CLAIM_POLICY).decide(BACKEND, S, "admin")
    assert isinstance(decision, Deny)
    assert not decision.unauthenticated
    assert "backend 'billing' is not a signed-in user" in decision.reason


def test_unauthenticated_only_for_anonymous_callers() -> None:
    policy = _policy('[[rule]]\npattern = "{n}"\nsubscribe = ["user:root"]\npublish = ["anyone"]')
    anonymous = policy.decide(ANONYMOUS, S, "x")
    assert isinstance(anonymous, Deny)
    assert anonymous.unauthenticated
    signed_in = policy.decide(OWNER, S, "x")
    assert isinstance(signed_in, Deny)
    assert not signed_in.unauthenticated


class Recorder:
    """A hook that records its calls and answers with a fixed result or exception."""

    def __init__(self, result: object = None, error: Exception | None = None) -> None:
        self.result = result
        self.error = error
        self.calls: list[tuple[Principal, Action, str, Mapping[str, str]]] = []

    def __call__(
        self, principal: Principal, action: Action, channel: str, params: Mapping[str, str]
    ) -> object:
        self.calls.append((principal, action, channel, params))
        if self.error is not None:
            raise self.error
        return self.result


HOOK_POLICY = """
[[rule]]
pattern = "presence-org-{org}"
subscribe = ["hook"]
[[rule]]
pattern = "org-{org}-{room}"
subscribe = ["backend", "hook"]
"""


def test_hook_receives_the_call_and_its_allow_decides() -> None:
    hook = Recorder(Allow("billing", "org member"))
    decision = _policy(HOOK_POLICY, hook).decide(OWNER, S, "org-acme-sales-eu")
    assert decision == Allow("org-{org}-{room}", "hook grants subscribe to user '42': org member")
    assert hook.calls == [(OWNER, S, "org-acme-sales-eu", {"org": "acme", "room": "sales-eu"})]


def test_hook_is_not_called_when_an_earlier_term_grants() -> None:
    hook = Recorder(Deny("never asked"))
    assert isinstance(_policy(HOOK_POLICY, hook).decide(BACKEND, S, "org-a-b"), Allow)
    assert hook.calls == []


def test_hook_deny_is_a_deny_with_its_reason() -> None:
    hook = Recorder(Deny("suspended", unauthenticated=True))
    policy = _policy(HOOK_POLICY, hook)
    decision = policy.decide(OWNER, S, "org-a-b")
    assert isinstance(decision, Deny)
    assert "hook denied: suspended" in decision.reason
    assert decision.rule == "org-{org}-{room}"
    assert not decision.unauthenticated  # a signed-in user is never told to log in
    anonymous = policy.decide(ANONYMOUS, S, "org-a-b")
    assert isinstance(anonymous, Deny)
    assert anonymous.unauthenticated


def test_hook_presence_supplies_user_info_but_not_the_member_id() -> None:
    hook = Recorder(AllowPresence("x", "member", user_id="someone-else", user_info={"seat": 4}))
    decision = _policy(HOOK_POLICY, hook).decide(OWNER, S, "presence-org-acme")
    assert isinstance(decision, AllowPresence)
    assert decision.user_id == "42"
    assert dict(decision.user_info) == {"seat": 4}


def test_hook_plain_allow_on_presence_uses_presence_info() -> None:
    decision = _policy(HOOK_POLICY, Recorder(Allow("x", "ok"))).decide(
        OWNER, S, "presence-org-acme"
    )
    assert decision == AllowPresence(
        "presence-org-{org}", "hook grants subscribe to user '42': ok", "42", {}
    )


def test_hook_presence_answer_off_presence_is_a_plain_allow() -> None:
    hook = Recorder(AllowPresence("x", "ok", user_id="42", user_info={}))
    decision = _policy(HOOK_POLICY, hook).decide(OWNER, S, "org-a-b")
    assert type(decision) is Allow


@pytest.mark.parametrize("garbage", [True, None, "allow", 1, {"allow": True}])
def test_hook_returning_anything_else_denies(
    garbage: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="core.policy.rules"):
        decision = _policy(HOOK_POLICY, Recorder(garbage)).decide(OWNER, S, "org-a-b")
    assert isinstance(decision, Deny)
    assert f"hook returned {type(garbage).__name__}, not a Decision" in decision.reason
    assert any("not a Decision" in r.getMessage() for r in caplog.records)


def test_hook_returning_a_coroutine_denies_without_a_warning() -> None:
    async def late() -> Decision:
        return Allow("x", "too late")

    def hook(*_: object) -> object:
        return late()

    # filterwarnings=error turns a "never awaited" RuntimeWarning into a failure.
    decision = _policy(HOOK_POLICY, hook).decide(OWNER, S, "org-a-b")
    assert isinstance(decision, Deny)
    assert "hook returned coroutine" in decision.reason


def test_hook_exception_denies_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    hook = Recorder(error=RuntimeError("db password is hunter2"))
    with caplog.at_level(logging.ERROR, logger="core.policy.rules"):
        decision = _policy(HOOK_POLICY, hook).decide(OWNER, S, "org-a-b")
    assert isinstance(decision, Deny)
    assert "hook raised RuntimeError" in decision.reason
    assert "hunter2" not in decision.reason  # the exception text stays in the log
    [record] = caplog.records
    assert record.exc_info is not None
    assert "org-a-b" in record.getMessage()


def test_hook_term_without_hook_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"test.toml: rule #1 \(presence-org-\{org\}\)"):
        _policy(HOOK_POLICY)


def test_explain_names_rule_params_terms_and_decision() -> None:
    explanation = Policy.default().explain(OTHER, S, "private-user-42")
    assert explanation.rule == "private-user-{id}"
    assert explanation.rule_index == 1
    assert explanation.params == {"id": "42"}
    assert explanation.terms == [("user:{id}", "no: user '7' is not '42'")]
    assert explanation.render().splitlines() == [
        "channel private-user-42, action subscribe, principal user '7'",
        "matched rule #1 private-user-{id} (built-in default) with id='42'",
        "  user:{id} -> no: user '7' is not '42'",
        "DENY (403): rule private-user-{id} does not grant subscribe to user '7': "
        "user '7' is not '42'",
    ]


def test_explain_presence_allow() -> None:
    text = Policy.default().explain(OWNER, S, "presence-lobby").render()
    assert "matched rule #3 presence-{name} (built-in default) with name='lobby'" in text
    assert "  user -> yes: user '42' is signed in" in text
    assert text.endswith(
        "ALLOW as presence member '42' (user_info: name='Ann'): user grants subscribe to user '42'"
    )


def test_explain_anonymous_says_a_login_would_help() -> None:
    text = Policy.default().explain(ANONYMOUS, S, "private-orders").render()
    assert "DENY (401, a login would help)" in text


def test_explain_rule_with_no_terms() -> None:
    lines = Policy.default().explain(OWNER, C, "news").render().splitlines()
    assert lines[1:] == [
        "matched rule #7 {name} (built-in default) with name='news'",
        "  no term was tried",
        "DENY (403): rule {name} grants client_event to nobody",
    ]


def test_explain_unmatched_channel_says_deny_by_default() -> None:
    explanation = Policy.default().explain(ANONYMOUS, S, "a b")
    assert explanation.rule is None
    assert explanation.params == {}
    assert explanation.terms == []
    assert explanation.render().splitlines() == [
        "channel a b, action subscribe, principal anonymous",
        "no rule in built-in default matches this channel",
        "  deny by default applies",
        "DENY (403): no rule matches channel 'a b'",
    ]
