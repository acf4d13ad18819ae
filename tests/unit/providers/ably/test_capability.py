"""Capabilities compiled from the policy: every default rule, custom patterns, and no widening."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from core.errors import Forbidden, InvalidUserId, TooManyItems, Unauthenticated
from core.policy import Action, Allow, AllowPresence, Deny, Policy
from core.policy.loader import parse_policy
from core.policy.senders import without_subscriber
from core.principal import ANONYMOUS, Principal, PrincipalKind, user
from providers.ably.capability import compile_capability
from providers.ably.provider import AblyProvider
from providers.ably.settings import AblySettings

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from core.policy import Hook
    from core.policy.decisions import Decision
    from providers.ably.capability import Capability

BACKEND = Principal(PrincipalKind.BACKEND, "key:0123abcd")
ALICE = user("alice", name="Alice", teams=["red", "blue", True, 7], org="acme")


def _provider() -> AblyProvider:
    return AblyProvider(AblySettings(api_key=SecretStr("app.key:secret")))


def _compile(policy: Policy, principal: Principal, channels: Sequence[str] = ()) -> Capability:
    return compile_capability(policy, principal, _provider().limits, channels=channels)


def _resources(
    policy: Policy, principal: Principal, channels: Sequence[str] = ()
) -> dict[str, Any]:
    return {k: list(v) for k, v in _compile(policy, principal, channels).resources.items()}


def _policy(text: str, hook: Hook | None = None) -> Policy:
    return Policy(parse_policy(text, source="test").rules, "test", hook)


# -- the built-in default policy, rule by rule -------------------------------------------------

DEFAULT = Policy.default()
ASKED = [
    "private-user-alice",
    "private-user-bob",
    "private-encrypted-vault",
    "presence-lobby",
    "private-room",
    "private-",
    "presence-",
    "news",
]


def test_rule_private_user_id_binds_the_users_own_channel_without_asking() -> None:
    assert _resources(DEFAULT, ALICE) == {"private-user-alice": ["history", "subscribe"]}
    assert _resources(DEFAULT, user("bob")) == {"private-user-bob": ["history", "subscribe"]}


def test_rule_private_user_id_never_opens_another_users_channel() -> None:
    assert "private-user-bob" not in _resources(DEFAULT, ALICE, ["private-user-bob"])


def test_rule_private_encrypted_is_left_out_ably_has_no_relay_encryption() -> None:
    capability = _compile(DEFAULT, ALICE, ["private-encrypted-vault"])
    assert "private-encrypted-vault" not in capability.resources
    assert "private-encrypted-{name}" in {g.pattern.text for g in capability.left_out}


def test_rule_presence_grants_presence_and_subscribe_to_users_only() -> None:
    assert _resources(DEFAULT, ALICE, ["presence-lobby"])["presence-lobby"] == [
        "presence",
        "subscribe",
    ]
    assert "presence-lobby" not in _resources(DEFAULT, ANONYMOUS, ["presence-lobby"])
    assert "presence-{name}" in {g.pattern.text for g in _compile(DEFAULT, ALICE).left_out}


def test_rule_private_name_grants_subscribe_to_users_only() -> None:
    assert _resources(DEFAULT, ALICE, ["private-room"])["private-room"] == ["subscribe"]
    assert _resources(DEFAULT, ANONYMOUS, ["private-room", "news"]) == {
        "news": ["history", "subscribe"]
    }


def test_rules_bare_prefixes_grant_nothing() -> None:
    assert not {"private-", "presence-"} & set(
        _resources(DEFAULT, ALICE, ["private-", "presence-"])
    )
    assert not {"private-", "presence-"} & set(_resources(DEFAULT, BACKEND, ["private-"]))


def test_rule_public_grants_subscribe_and_history_only_when_named() -> None:
    assert _resources(DEFAULT, ANONYMOUS, ["news"]) == {"news": ["history", "subscribe"]}
    left_out = {g.pattern.text: g for g in _compile(DEFAULT, ANONYMOUS).left_out}
    assert set(left_out) == {"{name}"}
    # The open public rule is shadowed by every earlier rule: a `*` would have widened it.
    assert "private-user-{id}" in left_out["{name}"].shadowed_by


def test_the_policys_publish_never_becomes_ably_publish() -> None:
    # Backends may publish (REST) everywhere; a token carries no publish for it.
    assert _resources(DEFAULT, BACKEND, ASKED) == {"news": ["history", "subscribe"]}


def test_the_whole_default_policy_for_alice() -> None:
    assert _resources(DEFAULT, ALICE, ASKED) == {
        "news": ["history", "subscribe"],
        "presence-lobby": ["presence", "subscribe"],
        "private-room": ["subscribe"],
        "private-user-alice": ["history", "subscribe"],
    }


# For each default rule: a channel it decides, and the operations alice's token gets there.
DEFAULT_RULES: dict[str, tuple[str, list[str] | None]] = {
    "private-user-{id}": ("private-user-alice", ["history", "subscribe"]),
    "private-encrypted-{name}": ("private-encrypted-vault", None),
    "presence-{name}": ("presence-lobby", ["presence", "subscribe"]),
    "private-{name}": ("private-room", ["subscribe"]),
    "private-": ("private-", None),
    "presence-": ("presence-", None),
    "{name}": ("news", ["history", "subscribe"]),
}


def test_every_default_rule_is_covered_here() -> None:
    # A new rule in default.toml fails this test until its expectation is written above.
    assert [rule.pattern for rule in DEFAULT.rules] == list(DEFAULT_RULES)
    for rule in DEFAULT.rules:
        channel, expected = DEFAULT_RULES[rule.pattern]
        assert DEFAULT.rule_for(channel) is rule
        assert _resources(DEFAULT, ALICE, [channel]).get(channel) == expected


# -- client events: `subscriber` is Pusher's client-* events, which Ably's publish cannot bound ---


def test_the_default_policys_subscriber_client_events_never_become_publish() -> None:
    # The engine grants alice client events on these channels; the token grants no publish.
    for channel in ("private-user-alice", "presence-lobby", "private-room"):
        assert isinstance(DEFAULT.decide(ALICE, Action.CLIENT_EVENT, channel), Allow)
    assert not any("publish" in ops for ops in _resources(DEFAULT, ALICE, ASKED).values())


SENDERS = """
[[rule]]
pattern = "private-lead-{x}"
subscribe = ["user"]
client_events = ["subscriber", "claim:role=lead"]

[[rule]]
pattern = "private-own-{id}"
subscribe = ["user:{id}"]
client_events = ["subscriber"]

[[rule]]
pattern = "room-{x}"
subscribe = ["user"]
client_events = ["subscriber"]
"""


def test_a_term_naming_who_sends_still_grants_publish_beside_subscriber() -> None:
    policy = _policy(SENDERS)
    lead = user("lee", role="lead")
    assert _resources(policy, lead, ["private-lead-1"])["private-lead-1"] == [
        "publish",
        "subscribe",
    ]
    assert _resources(policy, ALICE, ["private-lead-1"])["private-lead-1"] == ["subscribe"]


def test_subscriber_alone_grants_no_publish_on_bound_or_open_patterns() -> None:
    policy = _policy(SENDERS)
    capability = _compile(policy, ALICE, ["room-1"])
    assert dict(capability.resources) == {
        "private-own-alice": ("subscribe",),
        "room-1": ("subscribe",),
    }
    assert {g.pattern.text: g.actions for g in capability.left_out} == {
        "private-lead-{x}": frozenset({Action.SUBSCRIBE}),
        "room-{x}": frozenset({Action.SUBSCRIBE}),
    }


def test_leaving_subscriber_out_changes_nothing_else() -> None:
    stripped = without_subscriber(DEFAULT)
    assert [r.pattern for r in stripped.rules] == [r.pattern for r in DEFAULT.rules]
    for before, after in zip(DEFAULT.rules, stripped.rules, strict=True):
        for action in Action:
            expected = before.terms(action)
            if action is Action.CLIENT_EVENT:
                expected = tuple(t for t in expected if t.text != "subscriber")
            assert after.terms(action) == expected
    assert (stripped.source, stripped.hook) == (DEFAULT.source, DEFAULT.hook)


# -- custom patterns ---------------------------------------------------------------------------

TEAMS = """
[[rule]]
pattern = "team-admin"
subscribe = []

[[rule]]
pattern = "team-{team}"
subscribe = ["claim:teams={team}"]
client_events = ["claim:teams={team}"]
history = ["claim:teams={team}"]

[[rule]]
pattern = "org-{org}-room-{room}"
subscribe = ["claim:org={org}"]

[[rule]]
pattern = "inbox-{id}"
subscribe = ["user:u-{id}"]

[[rule]]
pattern = "crew-{crew}-deck"
subscribe = ["claim:teams={crew}"]
"""


def test_a_list_claim_binds_one_channel_per_item_strings_and_integers_only() -> None:
    got = _resources(_policy(TEAMS), ALICE)
    assert got["team-red"] == ["history", "publish", "subscribe"]
    assert got["team-blue"] == ["history", "publish", "subscribe"]
    assert got["team-7"] == ["history", "publish", "subscribe"]
    assert "team-True" not in got


def test_an_earlier_rule_still_decides_a_channel_a_later_term_binds() -> None:
    policy = _policy(TEAMS)
    admin = user("eve", teams=["admin", "ops"])
    got = _resources(policy, admin)
    assert "team-admin" not in got  # rule 1 decides it, and grants nobody
    assert "team-ops" in got


def test_a_placeholder_no_term_binds_is_left_out() -> None:
    capability = _compile(_policy(TEAMS), ALICE)
    assert not any(name.startswith("org-") for name in capability.resources)
    assert "org-acme-room-{room}" in {g.pattern.text for g in capability.left_out}
    named = _compile(_policy(TEAMS), ALICE, ["org-acme-room-1", "org-other-room-1"])
    assert named.resources["org-acme-room-1"] == ("subscribe",)
    assert "org-other-room-1" not in named.resources


def test_a_template_with_literal_text_binds_the_rest() -> None:
    assert _resources(_policy(TEAMS), user("u-42")).get("inbox-42") == ["subscribe"]
    assert not any(k.startswith("inbox-") for k in _resources(_policy(TEAMS), user("42")))


def test_a_value_a_placeholder_could_never_match_binds_nothing() -> None:
    # `{crew}` sits before "-deck", so it cannot hold a dash; `:`, `*` and spaces are never
    # channel characters.
    odd = user("mallory", teams=["a-b", "x:y", "*", "a b"])
    got = _resources(_policy(TEAMS), odd)
    assert got == {"team-a-b": ["history", "publish", "subscribe"]}


def test_a_hook_decides_exact_channels_and_open_hook_patterns_are_left_out() -> None:
    def hook(
        principal: Principal, action: Action, channel: str, params: Mapping[str, str]
    ) -> Decision:
        if principal.id == "alice":
            return Allow(rule="hook", reason="alice is a VIP")
        return Deny("not a VIP")

    policy = _policy(
        '[[rule]]\npattern = "vip"\nsubscribe = ["hook"]\n\n'
        '[[rule]]\npattern = "vip-{n}"\nsubscribe = ["hook"]\n',
        hook,
    )
    alice = _compile(policy, ALICE)
    assert dict(alice.resources) == {"vip": ("subscribe",)}
    assert [g.by_hook for g in alice.left_out] == [True]
    assert _compile(policy, user("bob")).empty


def test_resource_names_ably_would_read_as_wildcards_are_never_emitted() -> None:
    anything = _policy('[[rule]]\npattern = "{name}"\nsubscribe = ["anyone"]\n')
    got = _resources(anything, ALICE, ["a*", "*", "ns:*", "[meta]x", "a:b", "ok"])
    assert got == {"ok": ["subscribe"]}


# -- issue_token's refusals --------------------------------------------------------------------


async def test_nothing_granted_is_403_for_a_user_and_401_for_anonymous() -> None:
    nothing = _policy('[[rule]]\npattern = "news"\nsubscribe = ["backend"]\n')
    with pytest.raises(Forbidden):
        await _provider().issue_token(ALICE, nothing)
    with pytest.raises(Unauthenticated):
        await _provider().issue_token(ANONYMOUS, DEFAULT)
    with pytest.raises(Forbidden):
        await _provider().issue_token(BACKEND, DEFAULT)


async def test_the_wildcard_client_id_is_refused() -> None:
    with pytest.raises(InvalidUserId):
        await _provider().issue_token(user("*"), DEFAULT)


async def test_too_many_named_channels_are_refused() -> None:
    with pytest.raises(TooManyItems):
        await _provider().issue_token(ALICE, DEFAULT, channels=[f"c{i}" for i in range(101)])


# -- the proof: nothing a resource matches is beyond what the policy allows -------------------

CORPUS = [
    "news",
    "a:b",
    "x y",
    "[meta]channel.lifecycle",
    "private-user-alice",
    "private-user-bob",
    "presence-lobby",
    "private-room",
    "team-admin",
    "team-red",
    "team-green",
    "org-acme-room-1",
    "inbox-42",
]


def _samples(resource: str) -> set[str]:
    """Names near a resource, and a fixed corpus: whatever Ably would let the token touch."""
    near = {resource, resource + "x", resource + "-x", resource + ":x", resource + ":x:y"}
    near |= {"x" + resource, "x:" + resource, resource[:-1] or resource}
    return near | set(CORPUS)


def _allows(policy: Policy, principal: Principal, operation: str, channel: str) -> bool:
    action = {
        "subscribe": Action.SUBSCRIBE,
        "presence": Action.SUBSCRIBE,
        "publish": Action.CLIENT_EVENT,
        "history": Action.HISTORY,
    }[operation]
    decision = policy.decide(principal, action, channel)
    if operation == "presence":
        return isinstance(decision, AllowPresence)
    return isinstance(decision, Allow | AllowPresence)


def _widening(
    policy: Policy, principal: Principal, resources: Mapping[str, Sequence[str]]
) -> list[str]:
    return [
        f"{resource} {operation} {channel}"
        for resource, operations in resources.items()
        for channel in _samples(resource)
        if resource_matches(resource, channel)
        for operation in operations
        if not _allows(policy, principal, operation, channel)
    ]


@pytest.mark.parametrize("policy_text", [None, TEAMS, SENDERS])
@pytest.mark.parametrize(
    "principal", [ALICE, user("bob"), user("eve", teams=["admin", "ops"]), ANONYMOUS, BACKEND]
)
def test_no_granted_resource_matches_a_channel_the_policy_denies(
    policy_text: str | None, principal: Principal
) -> None:
    policy = DEFAULT if policy_text is None else _policy(policy_text)
    capability = _compile(policy, principal, CORPUS)
    assert _widening(policy, principal, capability.resources) == []


def test_the_proof_catches_a_wildcard() -> None:
    widened = _widening(DEFAULT, ALICE, {"*": ["subscribe"], "private-user-alice": ["history"]})
    assert "* subscribe private-user-bob" in widened
    assert "* subscribe a:b" in widened


@pytest.mark.parametrize(
    ("resource", "channel", "matches"),
    [
        ("*", "news", True),
        ("*", "ns:a:b", True),
        ("*", "[meta]x", False),
        ("[*]*", "[meta]x", True),
        ("[meta]*", "[meta]channel.lifecycle", True),
        ("[meta]*", "news", False),
        ("ns:*", "ns:chan", True),
        ("ns:*", "ns:chan:other", True),
        ("ns:*", "ns", False),
        ("ns:*", "nsx:chan", False),
        ("foo:*:baz", "foo:bar:baz", True),
        ("foo:*:baz", "foo:bar:bam:baz", False),
        ("foo*", "foo*", True),
        ("foo*", "foobar", False),
        ("presence-*", "presence-lobby", False),
        ("news", "news", True),
        ("news", "news:x", False),
    ],
)
def test_resource_matching_follows_ablys_documented_examples(
    resource: str, channel: str, matches: bool
) -> None:
    assert resource_matches(resource, channel) is matches


# -- the oracle: Ably's documented matching of capability resources ------------------------------
def resource_matches(resource: str, channel: str) -> bool:
    """Whether an Ably capability resource covers a channel name, by Ably's documented rules."""
    if resource == "[*]*":
        return True  # every channel, metachannel and queue
    wanted_qualifier, wanted_name = _qualified(resource)
    given_qualifier, given_name = _qualified(channel)
    if wanted_qualifier != given_qualifier:
        return False  # `*` covers plain channels only; [meta] and [queue] need their own
    wanted = wanted_name.split(":")
    given = given_name.split(":")
    for index, segment in enumerate(wanted):
        if segment == "*" and index == len(wanted) - 1:
            return len(given) > index  # a final `*` takes one or more remaining segments
        if index >= len(given) or (segment != "*" and segment != given[index]):
            return False
    return len(given) == len(wanted)


def _qualified(name: str) -> tuple[str, str]:
    """("[meta]", rest) for a qualified name, ("", name) for a plain channel."""
    end = name.find("]") if name.startswith("[") else -1
    return (name[: end + 1], name[end + 1 :]) if end > 0 else ("", name)
