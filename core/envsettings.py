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

    @staticmethod
    def aliases(alias: object) -> tuple[str, ...]:
        """The variables a field with a `validation_alias` is read from, in order."""
        if isinstance(alias, AliasChoices):
            return tuple(str(choice) for choice in alias.choices)
        if isinstance(alias, str):
            return (alias,)
        return ()
