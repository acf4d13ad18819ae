"""core.policy.grants and the `subscriber` term: client events wherever subscribe is granted.

(The rest of grants is covered beside its first user, tests/unit/providers/ably/test_grants.py.)
"""

from __future__ import annotations

from core.policy import Action, Policy
from core.policy.grants import grants
from core.principal import ANONYMOUS, user

S, C = Action.SUBSCRIBE, Action.CLIENT_EVENT

POLICY = """
[[rule]]
pattern = "private-user-{id}"
subscribe = ["user:{id}"]
client_events = ["subscriber"]

[[rule]]
pattern = "presence-{room}"
subscribe = ["user"]
client_events = ["subscriber"]

[[rule]]
pattern = "private-quiet-{x}"
subscribe = ["user"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
"""


def test_subscriber_binds_what_the_subscribe_terms_bind() -> None:
    found = grants(Policy.from_toml(POLICY, source="t"), user("ann"))
    own = {g.channel: g.actions for g in found.channels}
    assert own == {"private-user-ann": frozenset({S, C})}


def test_subscriber_on_an_open_pattern_grants_client_events_with_subscribe() -> None:
    found = grants(Policy.from_toml(POLICY, source="t"), user("ann"))
    patterns = {g.pattern.text: g.actions for g in found.patterns}
    assert patterns["presence-{room}"] == frozenset({S, C})
    assert patterns["private-quiet-{x}"] == frozenset({S})  # no client_events: none granted


def test_subscriber_grants_nothing_where_subscribe_is_refused() -> None:
    found = grants(Policy.from_toml(POLICY, source="t"), ANONYMOUS, channels=["private-user-ann"])
    assert found.channels == ()
    assert {g.pattern.text for g in found.patterns} == {"{name}"}
