"""Who a handler event's identity is: the authorizer's principal, the relay's role, or nobody."""

from __future__ import annotations

from core.principal import ANONYMOUS, Principal, PrincipalKind, user
from providers.appsync.identity import handler_context, principal_of

IAM = {"accountId": "111122223333", "userArn": "arn:aws:sts::111122223333:assumed-role/r/s"}


def test_the_authorizers_principal_comes_back_whole() -> None:
    ada = user("42", name="Ada", teams=["a", "b"])
    context = handler_context(ada)
    assert all(isinstance(v, str) for v in context.values())
    assert principal_of({"handlerContext": context}, api_key_is_backend=False) == ada


def test_an_anonymous_connection_stays_anonymous() -> None:
    context = handler_context(ANONYMOUS)
    assert principal_of({"handlerContext": context}, api_key_is_backend=True) is ANONYMOUS


def test_an_iam_caller_is_a_backend() -> None:
    found = principal_of(IAM, api_key_is_backend=False)
    assert found.kind is PrincipalKind.BACKEND
    assert found.id == "iam:" + IAM["userArn"]


def test_no_identity_is_the_api_key_only_when_the_relay_holds_one() -> None:
    assert principal_of(None, api_key_is_backend=False) is ANONYMOUS
    assert principal_of(None, api_key_is_backend=True).is_backend


def test_an_identity_of_a_mode_the_relay_does_not_configure_is_anonymous() -> None:
    cognito = {"sub": "u-1", "issuer": "https://cognito-idp", "claims": {}}
    assert principal_of(cognito, api_key_is_backend=True) is ANONYMOUS
    assert principal_of("odd", api_key_is_backend=True) is ANONYMOUS
    assert principal_of({"handlerContext": {}}, api_key_is_backend=True) is ANONYMOUS


def test_a_backend_principal_round_trips() -> None:
    backend = Principal(PrincipalKind.BACKEND, id="key:abcd", claims={})
    assert (
        principal_of({"handlerContext": handler_context(backend)}, api_key_is_backend=False)
        == backend
    )
