"""The browser-origin allowlist (RELAY_ALLOWED_ORIGINS), one rule for every way in: the HTTP
shell (app/origins.py) and the API Gateway `$connect` (providers/apigateway/lifecycle.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable


class AllowedOrigins:
    """`*` allows every origin; otherwise an exact match, a trailing slash ignored."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(origins)
        self.any = "*" in self.origins

    def allowed(self, origin: str | None) -> bool:
        """Whether a request with this Origin header may proceed (no header: not a browser)."""
        return origin is None or self.any or origin.rstrip("/") in self.origins
