"""Who is asking: the result of the identity gate, and the input of the policy gate."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field

if TYPE_CHECKING:
    from collections.abc import Mapping


class PrincipalKind(StrEnum):
    """The three kinds of caller."""

    ANONYMOUS = "anonymous"
    USER = "user"  # an end user, proven by a JWT (or by a signed socket)
    BACKEND = "backend"  # a server, proven by an API key or the app secret


class Principal(Struct, frozen=True):
    """An authenticated (or anonymous) caller; `claims` are the verified JWT claims of a user."""

    kind: PrincipalKind
    id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_user(self) -> bool:
        """True for an end user with a verified identity."""
        return self.kind is PrincipalKind.USER

    @property
    def is_backend(self) -> bool:
        """True for a backend holding an API key."""
        return self.kind is PrincipalKind.BACKEND

    def describe(self) -> str:
        """A short, secret-free description for logs and explanations."""
        if self.kind is PrincipalKind.ANONYMOUS:
            return "anonymous"
        return f"{self.kind.value} {self.id!r}"


ANONYMOUS = Principal(PrincipalKind.ANONYMOUS)


def user(user_id: str, **claims: Any) -> Principal:
    """A user principal (for tests and signed sockets)."""
    return Principal(PrincipalKind.USER, user_id, {"sub": user_id, **claims})
