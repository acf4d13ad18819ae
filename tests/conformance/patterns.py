"""Frame patterns and the placeholders a script names what only its run knows by.

Patterns are plain values compared exactly (a dict must have exactly the pattern's keys, unless a
value is `Optional`), with a few matchers where exact values cannot be known: `ANY`, `Json`
(a JSON-encoded string, as Pusher's `data` is), `Regex`, `Unordered`. `Chan` and `SignedUserData`
stand for a run's channel names and a client's signed user data (script.Run.resolve).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class User:
    """An end user: the JWT `sub` and `name` claims the relays sign presence and sign-in with."""

    id: str
    name: str
    watchlist: tuple[str, ...] = ()  # the user ids its sign-in watches (the token's claim)

    @property
    def info(self) -> dict[str, str]:
        """The presence user_info the relays' policy shares (`presence_info = ["name"]`)."""
        return {"name": self.name}


@dataclass(frozen=True, slots=True)
class Chan:
    """A channel name made unique per run: `Chan("private-chat")` is `private-chat-r7`."""

    name: str


@dataclass(frozen=True, slots=True)
class SignedUserData:
    """The user_data string a client's last pusher:signin carried."""

    client: str


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()  # any value, but the key must be there


@dataclass(frozen=True, slots=True)
class Optional:
    """In a dict pattern: the key may be absent; when present its value must match."""

    pattern: Any


@dataclass(frozen=True, slots=True)
class Json:
    """A string holding JSON whose decoded value matches the pattern."""

    pattern: Any


@dataclass(frozen=True, slots=True)
class Regex:
    """A string in which the regular expression is found."""

    expression: str


@dataclass(frozen=True, slots=True)
class Unordered:
    """A list with these items in any order."""

    items: tuple[Any, ...]


def mismatches(pattern: Any, value: Any, where: str = "frame") -> list[str]:
    """Every place where `value` does not match `pattern` (empty: it matches)."""
    if pattern is ANY:
        return []
    if isinstance(pattern, Json):
        if not isinstance(value, str):
            return [f"{where}: expected a JSON-encoded string, got {value!r}"]
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return [f"{where}: not JSON: {value!r}"]
        return mismatches(pattern.pattern, decoded, f"{where}(decoded)")
    if isinstance(pattern, Regex):
        if isinstance(value, str) and re.search(pattern.expression, value):
            return []
        return [f"{where}: {value!r} does not match /{pattern.expression}/"]
    if isinstance(pattern, Unordered):
        if isinstance(value, list) and sorted(map(repr, value)) == sorted(map(repr, pattern.items)):
            return []
        return [f"{where}: expected {list(pattern.items)!r} in any order, got {value!r}"]
    if isinstance(pattern, dict):
        return _dict_mismatches(pattern, value, where)
    if isinstance(pattern, list):
        if not isinstance(value, list) or len(value) != len(pattern):
            return [f"{where}: expected a list of {len(pattern)}, got {value!r}"]
        found: list[str] = []
        for index, (item, got) in enumerate(zip(pattern, value, strict=True)):
            found += mismatches(item, got, f"{where}[{index}]")
        return found
    # bool is an int and 1 == 1.0: the types must agree too.
    if type(pattern) is not type(value) or pattern != value:
        return [f"{where}: expected {pattern!r}, got {value!r}"]
    return []


def _dict_mismatches(pattern: dict[str, Any], value: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object, got {value!r}"]
    found = [f"{where}.{key}: unexpected (value {value[key]!r})" for key in value.keys() - pattern]
    for key, expected in pattern.items():
        if isinstance(expected, Optional):
            if key in value:
                found += mismatches(expected.pattern, value[key], f"{where}.{key}")
        elif key not in value:
            found.append(f"{where}.{key}: missing")
        else:
            found += mismatches(expected, value[key], f"{where}.{key}")
    return found
