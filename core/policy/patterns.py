"""Channel patterns with `{name}` placeholders, compiled to anchored regular expressions.

A pattern is literal channel characters (`-a-zA-Z0-9_=@,.;`, Pusher's channel alphabet) and
`{name}` placeholders. A placeholder matches one or more channel characters other than `-`, so
`presence-{team}-room-{room}` splits one way only; the placeholder that ends a pattern matches the
rest of the channel, dashes included, so `private-user-{id}` accepts UUID user ids. Patterns are
matched with `fullmatch`: `private-user-1` never matches `private-user-1x`.

A `Template` is the value side of a term (`user:{id}`, `claim:team={team}`): free text in which
the pattern's placeholders are substituted.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from msgspec import Struct

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

CHANNEL_CHARS = "-a-zA-Z0-9_=@,.;"  # the body of a regex character class
_LITERAL = re.compile(f"[{CHANNEL_CHARS}]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = r"[a-zA-Z0-9_=@,.;]+"  # a placeholder inside the pattern: no dash
_TAIL = f"[{CHANNEL_CHARS}]+"  # the placeholder that ends the pattern: dashes too


class PatternError(ValueError):
    """A pattern or template is malformed; the loader turns this into a ConfigurationError."""


class _Placeholder(Struct, frozen=True):
    name: str


_Token = str | _Placeholder


def _tokens(text: str) -> list[_Token]:
    """Split text into literal runs and placeholders, checking brace syntax and names."""
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        start = text.find("{", pos)
        stray = text.find("}", pos, len(text) if start < 0 else start)
        if stray >= 0:
            raise PatternError(f"'}}' without '{{' at position {stray}")
        if start < 0:
            tokens.append(text[pos:])
            break
        if start > pos:
            tokens.append(text[pos:start])
        end = text.find("}", start)
        if end < 0:
            raise PatternError(f"'{{' at position {start} is never closed")
        name = text[start + 1 : end]
        if not _NAME.fullmatch(name):
            raise PatternError(f"placeholder {{{name}}} is not a Python identifier")
        tokens.append(_Placeholder(name))
        pos = end + 1
    return tokens


class Pattern(Struct, frozen=True):
    """A compiled channel pattern; `match` returns the bound placeholders or None."""

    text: str
    placeholders: tuple[str, ...]
    regex: re.Pattern[str]

    @classmethod
    def compile(cls, text: str) -> Pattern:
        """Check and compile a pattern, raising PatternError with what is wrong."""
        if not text:
            raise PatternError("the pattern is empty")
        tokens = _tokens(text)
        names: list[str] = []
        parts: list[str] = []
        for i, token in enumerate(tokens):
            if isinstance(token, str):
                bad = _LITERAL.sub("", token)
                if bad:
                    raise PatternError(f"{bad[0]!r} is not a channel character")
                parts.append(re.escape(token))
                continue
            if token.name in names:
                raise PatternError(f"placeholder {{{token.name}}} appears twice")
            if i > 0 and isinstance(tokens[i - 1], _Placeholder):
                # `{a}{b}` could split "xy" as x|y or as xy|... : refuse the ambiguity.
                raise PatternError(f"placeholder {{{token.name}}} follows another placeholder")
            names.append(token.name)
            body = _TAIL if i == len(tokens) - 1 else _SEGMENT
            parts.append(f"(?P<{token.name}>{body})")
        return cls(text, tuple(names), re.compile("".join(parts)))

    def match(self, channel: str) -> dict[str, str] | None:
        """The placeholders bound by the whole channel name, or None if it does not match."""
        found = self.regex.fullmatch(channel)
        return None if found is None else found.groupdict()

    def __str__(self) -> str:
        return self.text


class Template(Struct, frozen=True):
    """A term value such as `{id}` or `org-{org}`, filled in from a pattern's bound placeholders."""

    text: str
    parts: tuple[_Token, ...]

    @classmethod
    def parse(cls, text: str, placeholders: Collection[str]) -> Template:
        """Check that the text is non-empty and names only the pattern's placeholders."""
        if not text:
            raise PatternError("the value is empty")
        parts = _tokens(text)
        for part in parts:
            if isinstance(part, _Placeholder) and part.name not in placeholders:
                known = ", ".join(f"{{{name}}}" for name in placeholders) or "none"
                raise PatternError(
                    f"{{{part.name}}} is not a placeholder of the pattern (it has: {known})"
                )
        return cls(text, tuple(parts))

    def render(self, params: Mapping[str, str]) -> str:
        """The value with each placeholder replaced by its bound text."""
        return "".join(p if isinstance(p, str) else params[p.name] for p in self.parts)

    def __str__(self) -> str:
        return self.text
