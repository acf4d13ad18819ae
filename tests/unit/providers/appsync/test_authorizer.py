"""The authorizer's cache answers: a connect lives no longer than its token, a channel decision
not at all, a malformed request is denied."""

from __future__ import annotations

from typing import Any

from core.identity import Authenticator
from core.settings import Settings
from core.tokens import mint_dev_token
from providers.appsync.authorizer import DENIED, authorize

JWT_SECRET = "appsync-unit-jwt-secret-0123456789abcdef0123"
SETTINGS = Settings(env="test", jwt_secret=JWT_SECRET)
NOW = 1_700_000_000.0


class NoGates:
    """The authorizing service, never reached by a connect or a malformed request."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the service was asked ({name})")


async def _connect(token: str, *, ttl: int, now: float = NOW) -> dict[str, Any]:
    event = {"authorizationToken": token, "requestContext": {"operation": "EVENT_CONNECT"}}
    return await authorize(
        event,
        authenticator=Authenticator(SETTINGS, clock=lambda: now),
        authorizer=NoGates(),  # type: ignore[arg-type]
        namespace="relay",
        ttl_seconds=ttl,
        clock=lambda: now,
    )


async def test_a_connect_is_cached_for_the_setting_or_until_the_token_expires() -> None:
    token = mint_dev_token(SETTINGS, user_id="42", ttl=120, now=NOW)
    assert (await _connect(token, ttl=300))["ttlOverride"] == 120
    assert (await _connect(token, ttl=60))["ttlOverride"] == 60
    assert (await _connect(token, ttl=300, now=NOW + 100))["ttlOverride"] == 20


async def test_an_anonymous_connect_is_cached_for_the_setting() -> None:
    answer = await _connect("anonymous", ttl=300)
    assert answer["isAuthorized"] is True
    assert answer["ttlOverride"] == 300
    assert answer["handlerContext"]["relayKind"] == "anonymous"


async def test_a_bearer_prefix_is_accepted() -> None:
    token = mint_dev_token(SETTINGS, user_id="42", ttl=120, now=NOW)
    assert (await _connect("Bearer " + token, ttl=300))["isAuthorized"] is True


async def test_a_malformed_request_is_denied() -> None:
    answer = await authorize(
        {"authorizationToken": 5, "requestContext": {}},
        authenticator=Authenticator(SETTINGS),
        authorizer=NoGates(),  # type: ignore[arg-type]
        namespace="relay",
        ttl_seconds=300,
    )
    assert answer == DENIED


async def test_an_unknown_operation_is_denied() -> None:
    event = {
        "authorizationToken": "anonymous",
        "requestContext": {"operation": "EVENT_UNSUBSCRIBE", "channel": "/relay/news"},
    }
    answer = await authorize(
        event,
        authenticator=Authenticator(SETTINGS),
        authorizer=NoGates(),  # type: ignore[arg-type]
        namespace="relay",
        ttl_seconds=300,
    )
    assert answer == DENIED
