"""Settings models read from environment variables: a pydantic model and a variable prefix.

This replaces pydantic-settings, which costs a Lambda cold start about 60 ms of imports (its
source providers, dotenv, argparse) for the one thing used here: a variable per field.

Each field `name` is read from `<PREFIX><NAME>`, matched without regard to case, or from each
name of its `validation_alias` (`AliasChoices("AWS_REGION", ...)`). Values are strings and
pydantic converts them (lax mode: "true", "5", "1.5", paths); a field that takes a list splits the
string in its own `mode="before"` validator. Keyword arguments win over the environment, so tests
and callers can set any field directly.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

# pydantic's error types in plain words, filled from the error's context; a value is never
# repeated (it may be a secret). Other types keep pydantic's message.
_PLAIN = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false (also 1 or 0, yes or no, on or off)",
    "greater_than": "must be more than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "literal_error": "must be {expected}",
    "string_too_short": "must be at least {min_length} characters",
    "string_too_long": "must be at most {max_length} characters",
    "string_pattern_mismatch": "must match {pattern}",
}


class EnvSettings(BaseModel):
    """A frozen settings model whose fields default to environment variables."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    env_prefix: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**self.from_environ(os.environ, given=values.keys()), **values})

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], *, given: Collection[str] = ()
    ) -> dict[str, str]:
        """The raw values this model finds in `environ` for the fields not `given` (by name or
        alias), keyed as it validates them."""
        upper = {name.upper(): value for name, value in environ.items()}
        found: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            aliases = cls.aliases(info.validation_alias)
            if name in given or any(alias in given for alias in aliases):
                continue
            for variable in aliases or (cls.env_name(name),):
                if variable.upper() in upper:
                    found[variable if aliases else name] = upper[variable.upper()]
                    break
        return found

    @classmethod
    def env_name(cls, field: str) -> str:
        """The variable a field is read from, when it has no alias."""
        return f"{cls.env_prefix}{field}".upper()

    @classmethod
    def variable(cls, key: object) -> str:
        """The variable behind a validation error's location: a field name or an alias."""
        key = str(key)
        return cls.env_name(key) if key in cls.model_fields else key

    @classmethod
    def problems(cls, error: ValidationError) -> list[str]:
        """Every problem of a failed validation, one line per variable in plain words; the
        variables that are required and unset come first, together."""
        missing: list[str] = []
        found: dict[str, str] = {}
        for details in error.errors(include_url=False):
            name = cls.variable(details["loc"][0]) if details["loc"] else f"{cls.env_prefix}*"
            if details["type"] == "missing":
                missing.append(name)
            else:
                found.setdefault(name, f"{name}: {cls._plain(details)}")
        unset = [f"{', '.join(missing)}: required, not set"] if missing else []
        return unset + list(found.values())

    @classmethod
    def _plain(cls, details: ErrorDetails) -> str:
        context = details.get("ctx", {})
        if details["type"] == "string_too_short" and context.get("min_length") == 1:
            return "must not be empty"
        if details["type"] == "string_pattern_mismatch":
            info = cls.model_fields.get(str(details["loc"][0])) if details["loc"] else None
            if info is not None and info.description:
                return f"must be {info.description}"
        template = _PLAIN.get(details["type"])
        if template is not None:
            return template.format(**context)
        return details["msg"].removeprefix("Value error, ")

    @staticmethod
    def aliases(alias: object) -> tuple[str, ...]:
        """The variables a field with a `validation_alias` is read from, in order."""
        if isinstance(alias, AliasChoices):
            return tuple(str(choice) for choice in alias.choices)
        if isinstance(alias, str):
            return (alias,)
        return ()
