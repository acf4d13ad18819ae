"""What a presented credential may look like, before anything is verified."""

from __future__ import annotations

import re

MAX_TOKEN_BYTES = 8 * 1024
# Three base64url segments; the signature may be empty so that an `alg: none` token is still
# recognised as a JWT and refused as such rather than as a wrong API key.
JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
