"""Channel patterns: placeholders, anchoring, the channel alphabet, and malformed patterns."""

from __future__ import annotations

import pytest

from core.policy.patterns import Pattern, PatternError, Template


def test_placeholder_binds_its_text() -> None:
    assert Pattern.compile("private-user-{id}").match("private-user-42") == {"id": "42"}


def test_pattern_without_placeholders_matches_only_itself() -> None:
    pattern = Pattern.compile("private-")
    assert pattern.placeholders == ()
    assert pattern.match("private-") == {}
    assert pattern.match("private-x") is None


def test_tail_placeholder_takes_dashes() -> None:
    uuid = "0b7e2f4c-1a2b-4c3d-8e9f-001122334455"
    assert Pattern.compile("private-user-{id}").match(f"private-user-{uuid}") == {"id": uuid}


def test_middle_placeholder_stops_at_dash() -> None:
    pattern = Pattern.compile("presence-{team}-room-{room}")
    assert pattern.placeholders == ("team", "room")
    assert pattern.match("presence-red-room-lobby") == {"team": "red", "room": "lobby"}
    assert pattern.match("presence-red-room-lobby-2") == {"team": "red", "room": "lobby-2"}
    # "red-blue" would need a dash inside {team}: no split of the channel is allowed.
    assert pattern.match("presence-red-blue-room-lobby") is None


@pytest.mark.parametrize(
    "channel",
    [
        "private-user-1x",  # longer at the end
        "xprivate-user-1",  # longer at the start
        "private-user-1\n",  # `$` would accept a trailing newline; fullmatch does not
        "private-user-",
        "private-user-10",
        "PRIVATE-USER-1",
    ],
)
def test_literal_pattern_is_anchored_at_both_ends(channel: str) -> None:
    assert Pattern.compile("private-user-1").match(channel) is None


def test_placeholder_needs_at_least_one_character() -> None:
    assert Pattern.compile("private-user-{id}").match("private-user-") is None
    assert Pattern.compile("{name}").match("") is None


@pytest.mark.parametrize("channel", ["a b", "a#b", "caf\u00e9", "a\nb", "a/b", "a{b}", "a*"])
def test_placeholders_match_channel_characters_only(channel: str) -> None:
    assert Pattern.compile("{name}").match(channel) is None
    assert Pattern.compile("{name}-x").match(f"{channel}-x") is None


def test_every_channel_character_is_accepted() -> None:
    alphabet = "abcXYZ019_-=@,.;"
    assert Pattern.compile("{name}").match(alphabet) == {"name": alphabet}
    assert Pattern.compile(alphabet).match(alphabet) == {}


def test_regex_metacharacters_in_literals_are_escaped() -> None:
    pattern = Pattern.compile("a.b")
    assert pattern.match("a.b") == {}
    assert pattern.match("axb") is None


def test_placeholder_at_start_is_the_tail_when_alone() -> None:
    assert Pattern.compile("{name}").match("private-user-1") == {"name": "private-user-1"}
    assert Pattern.compile("{org}-feed").match("acme-feed") == {"org": "acme"}
    assert Pattern.compile("{org}-feed").match("ac-me-feed") is None


def test_str_is_the_source_text() -> None:
    assert str(Pattern.compile("presence-{team}-room-{room}")) == "presence-{team}-room-{room}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("private-{id", "never closed"),
        ("private-id}", "without"),
        ("private-{}", "not a Python identifier"),
        ("private-{1d}", "not a Python identifier"),
        ("private-{a b}", "not a Python identifier"),
        ("private-{a-b}", "not a Python identifier"),
        ("private-{{id}}", "not a Python identifier"),
        ("{a}{b}", "follows another placeholder"),
        ("private-{id}-{id}", "appears twice"),
        ("private user", "' ' is not a channel character"),
        ("private-*", "'*' is not a channel character"),
        ("private-(id)", "'(' is not a channel character"),
    ],
)
def test_malformed_pattern_is_refused(text: str, problem: str) -> None:
    with pytest.raises(PatternError) as caught:
        Pattern.compile(text)
    assert problem in str(caught.value)


def test_template_substitutes_bound_placeholders() -> None:
    template = Template.parse("org-{org}:{id}", ["org", "id"])
    assert template.render({"org": "acme", "id": "7"}) == "org-acme:7"
    assert str(template) == "org-{org}:{id}"


def test_template_literal_may_hold_any_character() -> None:
    # User ids are not channel names: "auth0|abc" must be expressible.
    assert Template.parse("auth0|abc", []).render({}) == "auth0|abc"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("{uid}", "{uid} is not a placeholder of the pattern (it has: {id})"),
        ("{id", "never closed"),
        ("id}", "without"),
    ],
)
def test_malformed_template_is_refused(text: str, problem: str) -> None:
    with pytest.raises(PatternError) as caught:
        Template.parse(text, ["id"])
    assert problem in str(caught.value)
