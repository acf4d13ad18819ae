"""app.lambda_appsync and the relay's rate limits: a client's publish on AppSync costs what a
REST publish costs, and one subscribe (the authorizer's invocation, then onSubscribe's) costs one
`auth` token, whichever of the two AppSync asks first."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest

from app import lambda_appsync
from app.lambda_handler import LambdaRuntime
from app.relay import Relay
from core.policy import Policy
from core.settings import Settings
from core.tokens import mint_dev_token
from providers.appsync.provider import AppSyncProvider
from providers.appsync.settings import AppSyncSettings
from tests import lambda_runtime
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from collections.abc import Iterator

SLOW = 0.001  # tokens per second: nothing refills while a test runs
BURST = 3
POLICY = """
[[rule]]
pattern = "private-limited-{name}"
subscribe = ["user"]
client_events = ["subscriber"]
options = { rate_limit = { publish = { per_second = 0.001, burst = 2 } } }

[[rule]]
pattern = "private-user-{id}"
subscribe = ["user:{id}"]
publish = ["backend"]
client_events = ["subscriber"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
publish = ["backend"]
"""
IAM_IDENTITY = {
    "accountId": "111122223333",
    "sourceIp": ["10.0.0.1"],
    "username": "AROAEXAMPLE:relay",
    "userArn": "arn:aws:sts::111122223333:assumed-role/realtime-relay-dev-lambda/relay",
}


@pytest.fixture
def appsync_settings(relay_settings: Settings) -> Settings:
    """The unit settings on appsync, the auth and publish buckets BURST deep, never refilling."""
    return Settings(
        **UNIT_SETTINGS,
        provider="appsync",
        rate_auth_per_second=SLOW,
        rate_auth_burst=BURST,
        rate_publish_per_second=SLOW,
        rate_publish_burst=BURST,
    )


@pytest.fixture
def appsync_runtime(appsync_settings: Settings) -> Iterator[None]:
    provider = AppSyncProvider(
        AppSyncSettings(http_domain="example.appsync-api.us-east-1.amazonaws.com")
    )
    policy = Policy.from_toml(POLICY, source="test policy")
    lambda_runtime.install(
        LambdaRuntime(Relay.build(appsync_settings, provider=provider, policy=policy))
    )
    yield
    lambda_runtime.install(None)


def _context(settings: Settings, user_id: str) -> dict[str, str]:
    """The handlerContext the authorizer hands a connected user's handler invocations."""
    token = mint_dev_token(settings, user_id=user_id)
    answer = lambda_appsync.handler(_authorizer_request(token, "EVENT_CONNECT", None), None)
    assert answer["isAuthorized"] is True
    context: dict[str, str] = answer["handlerContext"]
    return context


def _authorizer_request(token: str, operation: str, path: str | None) -> dict[str, Any]:
    return {
        "authorizationToken": token,
        "requestContext": {
            "operation": operation,
            "channelNamespaceName": "relay",
            "channel": path,
        },
    }


def _handler_event(
    operation: str, path: str, identity: Any, events: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "identity": copy.deepcopy(identity),
        "request": {"headers": {}, "domainName": None},
        "info": {
            "channel": {"path": path, "segments": path.strip("/").split("/")},
            "channelNamespace": {"name": "relay"},
            "operation": operation,
        },
    }
    if events is not None:
        event["events"] = events
    return event


def _client_events(count: int) -> list[dict[str, Any]]:
    return [
        {"id": str(i), "payload": {"event": "client-typing", "data": {"n": i}}}
        for i in range(count)
    ]


def _publish(path: str, identity: Any, count: int) -> list[dict[str, Any]]:
    answer = lambda_appsync.handler(
        _handler_event("PUBLISH", path, identity, _client_events(count)), None
    )
    events: list[dict[str, Any]] = answer["events"]
    assert [e["id"] for e in events] == [str(i) for i in range(count)]
    return events


def _authorized(token: str, path: str) -> bool:
    request = _authorizer_request(token, "EVENT_SUBSCRIBE", path)
    answer = lambda_appsync.handler(request, None)
    assert answer["ttlOverride"] == 0
    return bool(answer["isAuthorized"])


def _passed(events: list[dict[str, Any]]) -> bool:
    return all("payload" in e and "error" not in e for e in events)


def _rate_limited(events: list[dict[str, Any]]) -> bool:
    return all(
        "payload" not in e and e["error"].startswith("too many publish requests") for e in events
    )


@pytest.mark.usefixtures("appsync_runtime")
def test_a_user_over_the_publish_rate_is_refused_on_onpublish(appsync_settings: Settings) -> None:
    """Each event costs one token of the caller's publish budget (BURST); a publish over what is
    left is refused event by event, costs nothing, and says when to try again."""
    identity = {"handlerContext": _context(appsync_settings, "42")}
    path = "/relay/private-user-42"
    assert _passed(_publish(path, identity, 2))
    refused = _publish(path, identity, 2)
    assert _rate_limited(refused)
    assert all("retry after" in e["error"] for e in refused)
    assert _passed(_publish(path, identity, 1))  # the refused publish took no token
    assert _rate_limited(_publish(path, identity, 1))
    # Another user's budget is their own.
    other = {"handlerContext": _context(appsync_settings, "7")}
    assert _passed(_publish("/relay/private-user-7", other, BURST))


@pytest.mark.usefixtures("appsync_runtime")
def test_a_publish_over_the_channels_rule_is_refused_on_onpublish(
    appsync_settings: Settings,
) -> None:
    """The rule's own publish limit (2) counts each event, within the caller's larger budget."""
    identity = {"handlerContext": _context(appsync_settings, "42")}
    assert _passed(_publish("/relay/private-limited-a", identity, 1))
    assert _rate_limited(_publish("/relay/private-limited-b", identity, 2))
    assert _passed(_publish("/relay/private-limited-b", identity, 1))
    assert _rate_limited(_publish("/relay/private-limited-c", identity, 1))
    assert _passed(_publish("/relay/private-user-42", identity, 1))  # the caller's third token


@pytest.mark.usefixtures("appsync_runtime")
def test_more_events_than_the_burst_are_refused_on_onpublish(appsync_settings: Settings) -> None:
    identity = {"handlerContext": _context(appsync_settings, "42")}
    events = _publish("/relay/private-user-42", identity, BURST + 1)
    assert all("payload" not in e and "rate limit's burst" in e["error"] for e in events)


@pytest.mark.usefixtures("appsync_runtime")
def test_the_relays_own_publishes_are_not_counted_again() -> None:
    """An IAM-signed publish is the relay's, counted when its REST API took it."""
    for _ in range(2):
        assert _passed(_publish("/relay/news", IAM_IDENTITY, BURST))


@pytest.mark.usefixtures("appsync_runtime")
def test_the_rate_limit_answers_before_the_policy(appsync_settings: Settings) -> None:
    """The gates' order: within its budget, a publish the policy refuses is refused whole; over
    it, the caller learns nothing from the policy."""
    identity = {"handlerContext": _context(appsync_settings, "42")}
    foreign = _handler_event("PUBLISH", "/relay/private-user-7", identity, _client_events(1))
    with pytest.raises(lambda_appsync.UnauthorizedException):
        lambda_appsync.handler(foreign, None)
    assert _passed(_publish("/relay/private-user-42", identity, BURST - 1))
    assert _rate_limited(lambda_appsync.handler(foreign, None)["events"])


@pytest.mark.usefixtures("appsync_runtime")
def test_one_subscribe_counts_once_against_the_auth_rate(appsync_settings: Settings) -> None:
    """With an auth burst of BURST, exactly BURST subscribes pass, each asked of the authorizer
    and then of onSubscribe, as AppSync asks them; the next is refused by onSubscribe."""
    token = mint_dev_token(appsync_settings, user_id="42")
    identity = {"handlerContext": _context(appsync_settings, "42")}
    path = "/relay/private-user-42"
    subscribe = _handler_event("SUBSCRIBE", path, identity)
    for _ in range(BURST):
        assert _authorized(token, path)
        assert lambda_appsync.handler(subscribe, None) is None
    assert _authorized(token, path)  # the policy's answer: the authorizer counts nothing
    with pytest.raises(lambda_appsync.UnauthorizedException, match="too many auth requests"):
        lambda_appsync.handler(subscribe, None)


@pytest.mark.usefixtures("appsync_runtime")
def test_the_authorizer_still_refuses_what_the_policy_refuses(appsync_settings: Settings) -> None:
    token = mint_dev_token(appsync_settings, user_id="42")
    assert not _authorized(token, "/relay/private-user-7")
