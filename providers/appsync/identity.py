"""Who AppSync says is asking, as the relay's Principal.

The authorizer verifies the caller's token (core/identity.py) and hands the principal to the
namespace's handlers in its `handlerContext`, which AppSync passes on as `identity.handlerContext`;
only this function's authorizer writes it, so the handlers trust it as they trust their own
verification. An IAM-signed caller (the relay's own publishes: only its role has
appsync:EventPublish) is a backend; a caller with no identity used the API key, which only the
relay holds when APPSYNC_API_KEY is set, and is anonymous otherwise.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.principal import ANONYMOUS, Principal, PrincipalKind

KIND, ID, CLAIMS = "relayKind", "relayId", "relayClaims"


def handler_context(principal: Principal) -> dict[str, str]:
    """The authorizer's `handlerContext`: flat strings, as AppSync carries them."""
    return {
        KIND: principal.kind.value,
        ID: principal.id or "",
        CLAIMS: orjson.dumps(dict(principal.claims)).decode(),
    }


def principal_of(identity: Any, *, api_key_is_backend: bool) -> Principal:
    """The principal behind a handler event's `identity`."""
    if identity is None:
        return (
            Principal(PrincipalKind.BACKEND, id="appsync-api-key")
            if api_key_is_backend
            else ANONYMOUS
        )
    if not isinstance(identity, dict):
        return ANONYMOUS
    context = identity.get("handlerContext")
    if isinstance(context, dict) and KIND in context:
        kind = PrincipalKind(str(context[KIND]))
        if kind is PrincipalKind.ANONYMOUS:
            return ANONYMOUS
        claims = orjson.loads(str(context.get(CLAIMS) or "{}"))
        return Principal(kind, id=str(context.get(ID)) or None, claims=claims)
    arn = identity.get("userArn")
    if isinstance(arn, str) and arn and identity.get("accountId"):
        return Principal(PrincipalKind.BACKEND, id="iam:" + arn)
    return ANONYMOUS  # Cognito or OIDC: modes the relay's template does not configure
