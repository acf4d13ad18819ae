"""Loading a policy from TOML: what it accepts, and one clear line for everything it refuses."""

from __future__ import annotations

import re
import sys
import uuid
from importlib import resources
from textwrap import dedent
from typing import TYPE_CHECKING

import pytest

from core.errors import ConfigurationError
from core.policy import Action, Allow, Deny, Policy
from core.principal import ANONYMOUS, user

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

SOURCE = "conf/policy.toml"
GOOD_RULE = '[[rule]]\npattern = "{name}"\nsubscribe = ["anyone"]\n'


@pytest.fixture
def hook_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a real importable module of hooks; returns a function that creates one."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(body: str) -> str:
        name = f"relay_policy_hooks_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(dedent(body), encoding="utf-8")
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


def _refused(text: str, *, source: str = SOURCE) -> str:
    with pytest.raises(ConfigurationError) as caught:
        Policy.from_toml(text, source=source)
    message = caught.value.detail
    assert message.startswith(f"{source}: ")
    assert "\n" not in message  # start-up prints one line
    return message


def test_loads_rules_in_file_order_with_their_terms() -> None:
    policy = Policy.from_toml(
        dedent("""
        [[rule]]
        pattern = "private-user-{id}"
        subscribe = ["user:{id}", "claim:role=admin"]
        publish = ["backend"]
        client_events = ["user:{id}"]
        history = ["user:{id}"]

        [[rule]]
        pattern = "presence-{room}"
        subscribe = ["user"]
        presence_info = ["name", "avatar"]
        options = { history_ttl = 60 }
        """),
        source=SOURCE,
    )
    assert policy.source == SOURCE
    first, second = policy.rules
    assert (first.index, first.pattern, second.index, second.pattern) == (
        1,
        "private-user-{id}",
        2,
        "presence-{room}",
    )
    assert [t.text for t in first.terms(Action.SUBSCRIBE)] == ["user:{id}", "claim:role=admin"]
    assert [t.text for t in first.terms(Action.CLIENT_EVENT)] == ["user:{id}"]
    assert second.terms(Action.PUBLISH) == ()  # a missing key is nobody
    assert second.presence_info == ("name", "avatar")
    assert dict(second.options) == {"history_ttl": 60}
    with pytest.raises(TypeError):
        second.options["history_ttl"] = 0  # type: ignore[index]


def test_loaded_policy_decides() -> None:
    policy = Policy.from_toml(GOOD_RULE, source=SOURCE)
    assert isinstance(policy.decide(ANONYMOUS, Action.SUBSCRIBE, "x"), Allow)
    assert isinstance(policy.decide(ANONYMOUS, Action.HISTORY, "x"), Deny)


def test_from_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(GOOD_RULE, encoding="utf-8")
    assert Policy.from_file(path).source == str(path)
    path.write_text(GOOD_RULE + 'oops = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match=f"^{re.escape(str(path))}: rule #1 "):
        Policy.from_file(path)


def test_from_file_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    expected = f"^{re.escape(str(missing))}: cannot read the policy file"
    with pytest.raises(ConfigurationError, match=expected):
        Policy.from_file(missing)


def test_default_toml_ships_inside_the_package() -> None:
    resource = resources.files("core.policy").joinpath("default.toml")
    assert resource.is_file()
    assert "[[rule]]" in resource.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[rule]\n", "invalid TOML: "),
        ("", "no [[rule]] tables"),
        ("rule = []\n", "no [[rule]] tables"),
        ('[rule]\npattern = "x"\n', "'rule' must be an array of tables"),
        ('rule = ["x"]\n', "rule #1: must be a table"),
        (GOOD_RULE + 'rules = "x"\n', "rule #1 ({name}): unknown key 'rules'"),
        ('policy = "strict"\n' + GOOD_RULE, "unknown top-level key 'policy'"),
        ("[[rule]]\nsubscribe = []\n", "rule #1: needs pattern"),
        ("[[rule]]\npattern = 3\n", "rule #1: needs pattern"),
        ('[[rule]]\npattern = "{name}"\nsubscibe = ["user"]\n', "unknown key 'subscibe'"),
        ('[[rule]]\npattern = "{name}"\nsubscribe = ["users"]\n', "unknown term 'users'"),
        ('[[rule]]\npattern = "{name}"\nsubscribe = ["Anyone"]\n', "unknown term 'Anyone'"),
        ('[[rule]]\npattern = "{name}"\nsubscribe = [" user"]\n', "unknown term ' user'"),
        ('[[rule]]\npattern = "{name}"\nsubscribe = "user"\n', "'subscribe' must be a list"),
        ('[[rule]]\npattern = "{name}"\nhistory = [1]\n', "'history' must be a list"),
        ('[[rule]]\npattern = "{n}"\npresence_info = "name"\n', "'presence_info' must be a list"),
        ('[[rule]]\npattern = "{n}"\noptions = 1\n', "'options' must be a table"),
        ('[[rule]]\npattern = "private {id}"\n', "' ' is not a channel character"),
        ('[[rule]]\npattern = "private-{id"\n', "never closed"),
        ('[[rule]]\npattern = ""\n', "the pattern is empty"),
        ('[[rule]]\npattern = "room-{id}-{id}"\n', "placeholder {id} appears twice"),
        ('[[rule]]\npattern = "room-{a}{b}"\n', "{b} follows another placeholder"),
        ('[[rule]]\npattern = "room-{1}"\n', "not a Python identifier"),
        (
            '[[rule]]\npattern = "private-user-{id}"\nsubscribe = ["user:{uid}"]\n',
            "subscribe: term 'user:{uid}': {uid} is not a placeholder of the pattern",
        ),
        ('[[rule]]\npattern = "{n}"\nsubscribe = ["user:"]\n', "the value is empty"),
        ('[[rule]]\npattern = "{n}"\nsubscribe = ["claim:role"]\n', "claim:NAME=VALUE"),
        ('[[rule]]\npattern = "{n}"\nsubscribe = ["claim:=x"]\n', "claim:NAME=VALUE"),
        ('[[rule]]\npattern = "{n}"\nsubscribe = ["claim:role="]\n', "the value is empty"),
        (
            '[[rule]]\npattern = "private-{n}"\nsubscribe = ["subscriber"]\n',
            "rule #1 (private-{n}): subscribe: the term 'subscriber' grants client events only: "
            "list it under client_events",
        ),
        ('[[rule]]\npattern = "{n}"\npublish = ["subscriber"]\n', "publish: the term 'subscriber'"),
        ('[[rule]]\npattern = "{n}"\nhistory = ["subscriber"]\n', "history: the term 'subscriber'"),
        (
            '[[rule]]\npattern = "{n}"\nclient_events = ["subscribers"]\n',
            "known: anyone, user, backend, subscriber, hook",
        ),
        (GOOD_RULE + GOOD_RULE, "rule #2 ({name}): repeats the pattern of rule #1"),
        (
            GOOD_RULE + '[[rule]]\npattern = "x"\npublish = ["hook"]\n',
            "rule #2 (x) uses the 'hook' term but no hook",
        ),
        ("hook = 3\n" + GOOD_RULE, "hook must be a string"),
        ('hook = "json"\n' + GOOD_RULE, "must look like 'package.module:function'"),
        ('hook = ":f"\n' + GOOD_RULE, "must look like 'package.module:function'"),
        ('hook = "relay_no_such_module_x:f"\n' + GOOD_RULE, "cannot be imported"),
        ('hook = "json:no_such_function"\n' + GOOD_RULE, "cannot be imported"),
        ('hook = "json:__name__"\n' + GOOD_RULE, "is not callable"),
    ],
)
def test_every_mistake_is_one_line_naming_source_and_rule(text: str, expected: str) -> None:
    assert expected in _refused(text)


def test_the_source_named_is_the_one_given() -> None:
    assert _refused("[[rule]\n", source="/etc/relay/policy.toml").startswith(
        "/etc/relay/policy.toml: invalid TOML"
    )


def test_error_keeps_its_cause() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Policy.from_toml('hook = "relay_no_such_module_x:f"\n' + GOOD_RULE, source=SOURCE)
    assert isinstance(caught.value.__cause__, ValueError)
    assert isinstance(caught.value.__cause__.__cause__, ModuleNotFoundError)


def test_hook_is_imported_at_load_and_called_on_decide(
    hook_module: Callable[[str], str],
) -> None:
    module = hook_module("""
        from core.policy import Allow, Deny

        def decide(principal, action, channel, params):
            if principal.id == params["org"]:
                return Allow("org", "owner of the org")
            return Deny("not the owner")
    """)
    policy = Policy.from_toml(
        f'hook = "{module}:decide"\n[[rule]]\npattern = "org-{{org}}"\nsubscribe = ["hook"]\n',
        source=SOURCE,
    )
    assert policy.hook is sys.modules[module].decide
    assert isinstance(policy.decide(user("acme"), Action.SUBSCRIBE, "org-acme"), Allow)
    denied = policy.decide(user("other"), Action.SUBSCRIBE, "org-acme")
    assert isinstance(denied, Deny)
    assert "hook denied: not the owner" in denied.reason


def test_hook_may_be_a_dotted_attribute(hook_module: Callable[[str], str]) -> None:
    module = hook_module("""
        class Hooks:
            @staticmethod
            def decide(principal, action, channel, params):
                raise AssertionError("not called at load")
    """)
    policy = Policy.from_toml(f'hook = "{module}:Hooks.decide"\n' + GOOD_RULE, source=SOURCE)
    assert policy.hook is sys.modules[module].Hooks.decide


def test_hook_module_that_fails_to_import(hook_module: Callable[[str], str]) -> None:
    module = hook_module("raise RuntimeError('broken at import')\n")
    message = _refused(f'hook = "{module}:decide"\n' + GOOD_RULE)
    assert f"hook '{module}:decide' cannot be imported: broken at import" in message


def test_async_hook_is_refused(hook_module: Callable[[str], str]) -> None:
    module = hook_module("""
        async def decide(principal, action, channel, params):
            return None
    """)
    assert "is async" in _refused(f'hook = "{module}:decide"\n' + GOOD_RULE)


def test_subscriber_is_a_client_events_term() -> None:
    policy = Policy.from_toml(
        '[[rule]]\npattern = "private-{n}"\nsubscribe = ["user"]\nclient_events = ["subscriber"]\n',
        source="t",
    )
    assert [t.text for t in policy.rules[0].terms(Action.CLIENT_EVENT)] == ["subscriber"]
