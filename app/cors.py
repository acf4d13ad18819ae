"""CORS for the relay's browser origins: the answers Starlette's CORSMiddleware gives for the
relay's configuration (these methods and headers, no credentials), computed inside the relay's
one middleware layer (app.middleware.Front) instead of in a layer of their own.

tests/unit/app/test_cors.py puts the same requests to both and compares the answers byte for byte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import PlainTextResponse

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.responses import Response

Headers = list[tuple[bytes, bytes]]

METHODS = ("GET", "POST")
REQUEST_HEADERS = ("Authorization", "Content-Type", "X-API-Key", "Idempotency-Key")
EXPOSED_HEADERS = ("Retry-After", "Idempotent-Replayed")
MAX_AGE = 600
# Always allowed by browsers, and listed by Starlette beside the configured ones.
_SAFELISTED = ("Accept", "Accept-Language", "Content-Language", "Content-Type")
_PREFLIGHT_VARY = (
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "
    "Access-Control-Request-Private-Network"
)


class Cors:
    """The preflight answer, and the headers added to every other answer, for these origins
    (`*`: any)."""

    def __init__(self, origins: Iterable[str]) -> None:
        origins = tuple(origins)
        self.any = "*" in origins
        self.origins = frozenset(origins)
        allowed = sorted(set(_SAFELISTED) | set(REQUEST_HEADERS))
        self._allowed_headers = frozenset(h.lower() for h in allowed)
        preflight = {"Vary": _PREFLIGHT_VARY}
        if self.any:
            preflight["Access-Control-Allow-Origin"] = "*"
        preflight["Access-Control-Allow-Methods"] = ", ".join(METHODS)
        preflight["Access-Control-Max-Age"] = str(MAX_AGE)
        preflight["Access-Control-Allow-Headers"] = ", ".join(allowed)
        self._preflight = preflight
        self._exposed = ", ".join(EXPOSED_HEADERS).encode("latin-1")

    def allows(self, origin: str) -> bool:
        """Whether CORS lets a page of this origin read answers (exact match, as Starlette)."""
        return self.any or origin in self.origins

    def preflight(
        self,
        origin: str,
        method: str,
        requested_headers: str | None,
        private_network: str | None,
    ) -> Response:
        """The answer to an OPTIONS request carrying Origin and Access-Control-Request-Method:
        200 with the grants, or 400 naming what is not allowed."""
        headers = dict(self._preflight)
        failures: list[str] = []
        if self.allows(origin):
            if not self.any:
                headers["Access-Control-Allow-Origin"] = origin
        else:
            failures.append("origin")
        if method not in METHODS:
            failures.append("method")
        if requested_headers is not None:
            for header in requested_headers.lower().split(","):
                if header.strip() not in self._allowed_headers:
                    failures.append("headers")
                    break
        if private_network is not None:  # never allowed
            failures.append("private-network")
        if failures:
            text = "Disallowed CORS " + ", ".join(failures)
            return PlainTextResponse(text, status_code=400, headers=headers)
        return PlainTextResponse("OK", status_code=200, headers=headers)

    def answer(self, origin: str | None, headers: Iterable[tuple[bytes, bytes]]) -> Headers:
        """An answer's headers with what CORS adds to them: the allowed origin, the exposed
        headers and `Vary: Origin`."""
        out = list(headers)
        if origin is not None:
            if self.any:
                _set(out, b"access-control-allow-origin", b"*")
            _set(out, b"access-control-expose-headers", self._exposed)
            if not self.any and origin in self.origins:
                _set(out, b"access-control-allow-origin", origin.encode("latin-1"))
        vary = [value for name, value in out if name == b"vary"]
        _set(out, b"vary", b", ".join([*vary, b"Origin"]))
        return out


def _set(headers: Headers, name: bytes, value: bytes) -> None:
    """Replace the first header of this name and drop the others, or append it (as Starlette's
    MutableHeaders does)."""
    found = [i for i, (key, _) in enumerate(headers) if key == name]
    for i in reversed(found[1:]):
        del headers[i]
    if found:
        headers[found[0]] = (name, value)
    else:
        headers.append((name, value))
