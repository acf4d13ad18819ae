"""app.lambda_appsync against the request and answer shapes AWS documents for AppSync Events, and
its decisions against `relay policy explain` for the same caller and channel.

No AppSync emulator runs here. moto (5.2) models the Event API's control plane (CreateApi with
its eventConfig, channel namespaces with their handlerConfigs) and answers `POST /event` with
every event successful, checking no signature, auth mode or limit; it never invokes an authorizer
or a handler. So the invocations here are the documented examples:

- the Lambda authorizer's request and answer:
  https://docs.aws.amazon.com/appsync/latest/eventapi/configure-event-api-auth.html
  (AWS_LAMBDA authorization: authorizationToken, requestContext.operation EVENT_CONNECT |
  EVENT_SUBSCRIBE | EVENT_PUBLISH, requestContext.channel; isAuthorized, ttlOverride,
  handlerContext)
- the onSubscribe/onPublish events and answers of a Lambda data source, as Powertools for AWS
  Lambda's AppSyncEventsResolver documents them:
  https://docs.powertools.aws.dev/lambda/python/latest/core/event_handler/appsync_events/
  (info.channel.path, info.operation, events [{id, payload}]; None allows a subscribe, an
  UnauthorizedException refuses with 403, {"events": [{id, payload} | {id, error}]})
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app import lambda_appsync
from app.lambda_handler import LambdaRuntime
from app.relay import Relay
from core.policy import Action, Deny, Policy
from core.principal import ANONYMOUS, Principal, PrincipalKind, user
from core.settings import Settings
from core.tokens import mint_dev_token
from providers.appsync.provider import AppSyncProvider
from providers.appsync.settings import AppSyncSettings
from tests import lambda_runtime

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "contract-appsync-api-key-0123456789"
JWT_SECRET = "contract-appsync-jwt-secret-0123456789abcdef0123"
SETTINGS = {
    "env": "test",
    "provider": "appsync",
    "jwt_secret": JWT_SECRET,
    "api_keys": API_KEY,
    "rate_limits": False,
}

# The documented authorizer request (configure-event-api-auth.html), values as in AWS's example.
AUTHORIZER_REQUEST: dict[str, Any] = {
    "authorizationToken": "ExampleAuthToken123123123",
    "requestContext": {
        "apiId": "aaaaaa123123123example123",
        "accountId": "111122223333",
        "requestId": "f4081827-1111-4444-5555-5cf4695f339f",
        "operation": "EVENT_CONNECT",
        "channelNamespaceName": "relay",
        "channel": None,
    },
    "requestHeaders": {"host": "aaaaaa123123123example123.appsync-api.us-east-1.amazonaws.com"},
}

# The documented handler event (Powertools' payload_request.json), the namespace renamed.
HANDLER_EVENT: dict[str, Any] = {
    "identity": None,
    "result": None,
    "request": {
        "headers": {"x-forwarded-for": "1.1.1.1, 2.2.2.2", "user-agent": "Mozilla/5.0"},
        "domainName": None,
    },
    "info": {
        "channel": {"path": "/relay/channel", "segments": ["relay", "channel"]},
        "channelNamespace": {"name": "relay"},
        "operation": "PUBLISH",
    },
    "error": None,
    "prev": None,
    "stash": {},
    "outErrors": [],
    "events": [
        {"payload": {"data": "data_1"}, "id": "1"},
        {"payload": {"data": "data_2"}, "id": "2"},
    ],
}
IAM_IDENTITY = {
    "accountId": "111122223333",
    "sourceIp": ["10.0.0.1"],
    "username": "AROAEXAMPLE:relay",
    "userArn": "arn:aws:sts::111122223333:assumed-role/realtime-relay-dev-lambda/relay",
}


def _runtime(policy: Policy) -> LambdaRuntime:
    settings = Settings(**SETTINGS)
    provider = AppSyncProvider(
        AppSyncSettings(http_domain="example.appsync-api.us-east-1.amazonaws.com")
    )
    return LambdaRuntime(Relay.build(settings, provider=provider, policy=policy))


class Case:
    """A policy, its name, and channels of each kind under it."""

    def __init__(self, name: str, policy: Policy, channels: list[str]) -> None:
        self.name, self.policy, self.channels = name, policy, channels

    @property
    def public(self) -> str:
        return self.channels[0]

    @property
    def presence(self) -> str:
        return self.channels[3]


@pytest.fixture(params=["default", "laravel"])
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    name = str(request.param)
    chosen = (
        Policy.default()
        if name == "default"
        else Policy.from_file(ROOT / "examples/policies/laravel.toml")
    )
    lambda_runtime.install(_runtime(chosen))
    yield Case(name, chosen, CHANNELS[name])
    lambda_runtime.install(None)


def _token(principal: Principal) -> str:
    if principal.kind is PrincipalKind.ANONYMOUS:
        return "anonymous"
    if principal.is_backend:
        return API_KEY
    claims = {k: v for k, v in principal.claims.items() if k == "name"}
    return mint_dev_token(Settings(**SETTINGS), user_id=str(principal.id), **claims)


def _authorizer_request(token: str, operation: str, path: str | None) -> dict[str, Any]:
    request = copy.deepcopy(AUTHORIZER_REQUEST)
    request["authorizationToken"] = token
    request["requestContext"]["operation"] = operation
    request["requestContext"]["channel"] = path
    return request


def _path(channel: str) -> str:
    return "/relay/" + channel.replace(".", "/")


CALLERS = [ANONYMOUS, user("42", name="Ada"), user("7"), Principal(PrincipalKind.BACKEND, id="b")]
CHANNELS = {
    "default": ["news", "private-user-42", "private-user-7", "presence-room1", "private-orders"],
    "laravel": [
        "orders",
        "private-App.Models.User.42",
        "private-App.Models.User.7",
        "presence-chat.5",
        "private-orders.1",
    ],
}


def _explained(policy: Policy, who: Principal, action: Action, channel: str) -> bool:
    return not isinstance(policy.explain(who, action, channel).decision, Deny)


def test_connect_allows_a_verified_token_and_caches_it_no_longer_than_it_lives(
    case: Case,
) -> None:
    answer = lambda_appsync.handler(
        _authorizer_request(_token(user("42", name="Ada")), "EVENT_CONNECT", None), None
    )
    assert answer["isAuthorized"] is True
    assert 0 < answer["ttlOverride"] <= 300
    assert answer["handlerContext"]["relayId"] == "42"
    assert all(isinstance(v, str) for v in answer["handlerContext"].values())


@pytest.mark.parametrize("token", ["ExampleAuthToken123123123", "Bearer not.a.jwt", ""])
def test_connect_denies_a_token_that_does_not_verify(case: Case, token: str) -> None:
    answer = lambda_appsync.handler(_authorizer_request(token, "EVENT_CONNECT", None), None)
    assert answer == {"isAuthorized": False, "ttlOverride": 0}


def test_the_authorizer_decides_as_policy_explain(case: Case) -> None:
    """Subscribe as explain's `subscribe`; publish as its `publish` for a backend and its
    `client_event` for anyone else, over every caller and channel; never cached."""
    answers: list[bool] = []
    for who in CALLERS:
        token = _token(who)
        for channel in case.channels:
            for operation, action in (
                ("EVENT_SUBSCRIBE", Action.SUBSCRIBE),
                ("EVENT_PUBLISH", Action.PUBLISH if who.is_backend else Action.CLIENT_EVENT),
            ):
                request = _authorizer_request(token, operation, _path(channel))
                answer = lambda_appsync.handler(request, None)
                expected = _explained(case.policy, who, action, channel)
                assert answer["isAuthorized"] is expected, (who.describe(), channel, operation)
                assert answer["ttlOverride"] == 0
                answers.append(expected)
    assert len(answers) == len(CALLERS) * 5 * 2
    assert 0 < sum(answers) < len(answers)  # both answers are compared


def test_the_handlers_decide_as_policy_explain(case: Case) -> None:
    """onSubscribe as explain's `subscribe`, the identity the authorizer handed over."""
    for who in CALLERS[:3]:
        connect = _authorizer_request(_token(who), "EVENT_CONNECT", None)
        context = lambda_appsync.handler(connect, None)["handlerContext"]
        for channel in case.channels:
            event = copy.deepcopy(HANDLER_EVENT)
            event["identity"] = {"handlerContext": context}
            event["info"]["operation"] = "SUBSCRIBE"
            event["info"]["channel"]["path"] = _path(channel)
            expected = _explained(case.policy, who, Action.SUBSCRIBE, channel)
            if expected:
                assert lambda_appsync.handler(event, None) is None
            else:
                with pytest.raises(lambda_appsync.UnauthorizedException):
                    lambda_appsync.handler(event, None)


def test_the_documented_publish_event_from_the_relays_role_passes_unchanged(case: Case) -> None:
    event = copy.deepcopy(HANDLER_EVENT)
    event["identity"] = IAM_IDENTITY
    event["info"]["channel"]["path"] = _path(case.public)
    answer = lambda_appsync.handler(event, None)
    assert answer == {
        "events": [
            {"id": "1", "payload": {"data": "data_1"}},
            {"id": "2", "payload": {"data": "data_2"}},
        ]
    }


def test_a_client_publish_is_held_to_client_events_one_by_one(case: Case) -> None:
    connect = _authorizer_request(_token(user("42")), "EVENT_CONNECT", None)
    context = lambda_appsync.handler(connect, None)["handlerContext"]
    event = copy.deepcopy(HANDLER_EVENT)
    event["identity"] = {"handlerContext": context}
    event["info"]["channel"]["path"] = _path(case.presence)
    event["events"] = [
        {"id": "1", "payload": {"event": "client-typing", "data": {"on": True}}},
        {"id": "2", "payload": {"event": "order-shipped", "data": {}}},  # a backend's name
        {"id": "3", "payload": {"data": "data_1"}},  # not the relay's event shape
        {"id": "4", "payload": {"event": "client-big", "data": "x" * 300_000}},
    ]
    answer = lambda_appsync.handler(event, None)
    events = answer["events"]
    assert events[0] == {"id": "1", "payload": {"event": "client-typing", "data": {"on": True}}}
    assert [e["id"] for e in events] == ["1", "2", "3", "4"]
    assert all("error" in e and "payload" not in e for e in events[1:])


@pytest.mark.parametrize("path", ["/relay/*", "/relay/private-user-42/*", "/other/news"])
def test_a_wildcard_or_foreign_path_is_refused_everywhere(case: Case, path: str) -> None:
    request = _authorizer_request(_token(user("42")), "EVENT_SUBSCRIBE", path)
    assert lambda_appsync.handler(request, None)["isAuthorized"] is False
    event = copy.deepcopy(HANDLER_EVENT)
    event["identity"] = IAM_IDENTITY
    event["info"]["operation"] = "SUBSCRIBE"
    event["info"]["channel"]["path"] = path
    with pytest.raises(lambda_appsync.UnauthorizedException):
        lambda_appsync.handler(event, None)


def test_an_anonymous_publish_is_refused_whole(case: Case) -> None:
    event = copy.deepcopy(HANDLER_EVENT)
    event["info"]["channel"]["path"] = _path(case.public)
    with pytest.raises(lambda_appsync.UnauthorizedException):
        lambda_appsync.handler(event, None)
