"""The Event API's Lambda authorizer, answered by the relay's gates.

AppSync calls it for each connect, subscribe and publish made with the AWS_LAMBDA mode
(https://docs.aws.amazon.com/appsync/latest/eventapi/configure-event-api-auth.html):

    request   {"authorizationToken", "requestContext": {"apiId", "accountId", "requestId",
               "operation": EVENT_CONNECT | EVENT_SUBSCRIBE | EVENT_PUBLISH,
               "channelNamespaceName", "channel"}, "requestHeaders"}
    answer    {"isAuthorized", "ttlOverride", "handlerContext"}

The token is the relay's: a user's JWT, a backend's relay API key, or `anonymous`. A connect is
allowed for a token that verifies, cached for APPSYNC_AUTHORIZER_TTL_SECONDS at most and never
past the token's `exp`. A subscribe is the policy's `subscribe`; a publish is the policy's
`publish` for a backend and `client_events` for anyone else, as `relay policy explain` decides
them. Channel decisions are never cached (ttlOverride 0): AppSync keys its cache on the token,
and one channel's answer must not stand for another's. The namespace's handlers decide every
subscribe and publish again (handlers.py), whatever mode or cache let it through, with all the
gates: they, not this, count it against the rate limit, so that one subscribe costs one token.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from core.access import allowed
from core.errors import RelayError
from core.policy import Action
from core.principal import ANONYMOUS
from core.validation import validate_channel
from providers.appsync import channels
from providers.appsync.identity import handler_context

if TYPE_CHECKING:
    from collections.abc import Callable

    from core.authorizing import Authorizer
    from core.identity import Authenticator
    from core.policy import Decision, Policy
    from core.principal import Principal

CONNECT, SUBSCRIBE, PUBLISH = "EVENT_CONNECT", "EVENT_SUBSCRIBE", "EVENT_PUBLISH"
ANONYMOUS_TOKEN = "anonymous"  # noqa: S105 - the word a client without a token sends
DENIED: dict[str, Any] = {"isAuthorized": False, "ttlOverride": 0}


def is_authorizer_request(event: object) -> bool:
    """Whether a Lambda event is an authorizer request (as opposed to a handler's)."""
    return isinstance(event, dict) and "authorizationToken" in event and "requestContext" in event


async def authorize(
    event: dict[str, Any],
    *,
    authenticator: Authenticator,
    authorizer: Authorizer,
    namespace: str,
    ttl_seconds: int,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The authorizer's answer to one request; a malformed one is denied."""
    context = event.get("requestContext")
    token = event.get("authorizationToken")
    if not isinstance(context, dict) or not isinstance(token, str):
        return DENIED
    operation = context.get("operation")
    try:
        principal = await _principal(authenticator, token)
        if operation == CONNECT:
            ttl = _connect_ttl(principal, ttl_seconds, clock())
            return {
                "isAuthorized": True,
                "ttlOverride": ttl,
                "handlerContext": handler_context(principal),
            }
        channel = channels.from_path(namespace, context.get("channel"))
        if operation == SUBSCRIBE:
            name = validate_channel(channel, authorizer.provider.limits)
            allowed(authorizer.policy.decide(principal, Action.SUBSCRIBE, name), name)
        elif operation == PUBLISH:
            allowed(decide_publish(authorizer.policy, principal, channel), channel)
        else:
            return DENIED
    except RelayError:
        return DENIED
    return {"isAuthorized": True, "ttlOverride": 0, "handlerContext": handler_context(principal)}


def decide_publish(policy: Policy, principal: Principal, channel: str) -> Decision:
    """A publish to AppSync: the policy's `publish` for a backend (as the REST API asks it), its
    `client_events` for anyone else (a client publishing on its own connection, asked as a
    subscriber of the channel, as `relay policy explain --action client_event` asks it)."""
    action = Action.PUBLISH if principal.is_backend else Action.CLIENT_EVENT
    return policy.decide(principal, action, channel)


async def _principal(authenticator: Authenticator, token: str) -> Principal:
    credential = token.strip()
    if credential == ANONYMOUS_TOKEN:
        return ANONYMOUS
    if credential[:7].lower() == "bearer ":
        credential = credential[7:].strip()
    return await authenticator.authenticate(authorization=f"Bearer {credential}")


def _connect_ttl(principal: Principal, ttl_seconds: int, now: float) -> int:
    """How long AppSync may keep a connect answer: never past the token's expiry."""
    expires = principal.claims.get("exp")
    if isinstance(expires, int | float) and not isinstance(expires, bool):
        return max(0, min(ttl_seconds, math.floor(expires - now)))
    return ttl_seconds
