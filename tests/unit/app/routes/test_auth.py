"""POST /auth/channel and POST /auth/user: the signed answers pusher-js asks for."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from core.tokens import mint_dev_token
from providers.pusherproto import signing

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from core.settings import Settings

PROBLEM = "urn:realtime-relay:problem:"
SOCKET = "1234.5678"


def _secret(settings: Settings) -> str:
    return settings.app_secret.get_secret_value()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + slug
    assert body["status"] == status
    return body


async def test_private_channel_answer_is_exactly_the_signed_auth(
    http: httpx.AsyncClient, relay_settings: Settings, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "private-room"},
        headers=_bearer(relay_token("alice")),
    )
    assert response.status_code == 200
    expected = signing.channel_auth(
        "unit-key", _secret(relay_settings), socket_id=SOCKET, channel="private-room"
    )
    assert response.json() == {"auth": expected}
    assert expected.startswith("unit-key:")


async def test_form_and_json_bodies_give_identical_answers(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    token = relay_token("alice", name="Alice")
    for channel in ("private-room", "presence-lobby", "private-user-alice"):
        fields = {"socket_id": SOCKET, "channel_name": channel}
        form = await http.post("/auth/channel", data=fields, headers=_bearer(token))
        json_ = await http.post("/auth/channel", json=fields, headers=_bearer(token))
        assert form.status_code == json_.status_code == 200
        assert form.json() == json_.json()


async def test_private_user_channel_is_allowed_for_its_own_user(
    http: httpx.AsyncClient, relay_settings: Settings, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "private-user-alice"},
        headers=_bearer(relay_token("alice")),
    )
    assert response.status_code == 200
    assert signing.verify_channel_auth(
        "unit-key",
        _secret(relay_settings),
        response.json()["auth"],
        socket_id=SOCKET,
        channel="private-user-alice",
    )


async def test_presence_answer_carries_signed_channel_data_from_the_token(
    http: httpx.AsyncClient, relay_settings: Settings, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "presence-lobby"},
        headers=_bearer(relay_token("alice", name="Alice Liddell")),
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"auth", "channel_data"}
    assert orjson.loads(body["channel_data"]) == {
        "user_id": "alice",
        "user_info": {"name": "Alice Liddell"},
    }
    assert body["auth"] == signing.channel_auth(
        "unit-key",
        _secret(relay_settings),
        socket_id=SOCKET,
        channel="presence-lobby",
        channel_data=body["channel_data"],
    )


async def test_presence_without_a_name_claim_shares_empty_user_info(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/channel",
        json={"socket_id": SOCKET, "channel_name": "presence-lobby"},
        headers=_bearer(relay_token("bob")),
    )
    assert response.status_code == 200
    assert orjson.loads(response.json()["channel_data"]) == {"user_id": "bob", "user_info": {}}


@pytest.mark.parametrize("channel", ["private-room", "presence-lobby", "private-user-alice"])
async def test_anonymous_on_a_protected_channel_is_401_with_www_authenticate(
    http: httpx.AsyncClient, channel: str
) -> None:
    response = await http.post("/auth/channel", data={"socket_id": SOCKET, "channel_name": channel})
    body = _assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert body["instance"] == "/auth/channel"
    assert "auth" not in body


async def test_another_users_private_channel_is_403_forbidden(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "private-user-alice"},
        headers=_bearer(relay_token("mallory")),
    )
    body = _assert_problem(response, 403, "forbidden")
    assert "auth" not in body
    assert "www-authenticate" not in response.headers


async def test_api_key_cannot_sign_a_presence_subscription(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    # A backend is no presence member: there is no user id to list.
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "presence-lobby"},
        headers={"X-API-Key": relay_api_key},
    )
    body = _assert_problem(response, 403, "forbidden")
    assert "auth" not in body


async def test_public_channel_needs_no_authorization(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "news"},
        headers=_bearer(relay_token("alice")),
    )
    _assert_problem(response, 400, "invalid-request")


@pytest.mark.parametrize(
    "socket_id", ["", "1234", "abc.def", "1234.5678.9", " 1234.5678", "1234.5678\n", "-1.2"]
)
async def test_malformed_socket_id_is_400_invalid_socket_id(
    http: httpx.AsyncClient, relay_token: Callable[..., str], socket_id: str
) -> None:
    response = await http.post(
        "/auth/channel",
        data={"socket_id": socket_id, "channel_name": "private-room"},
        headers=_bearer(relay_token("alice")),
    )
    _assert_problem(response, 400, "invalid-socket-id")


async def test_missing_socket_id_is_400_invalid_socket_id(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/channel",
        json={"channel_name": "private-room", "socket_id": 1234.5678},
        headers=_bearer(relay_token("alice")),
    )
    _assert_problem(response, 400, "invalid-socket-id")


@pytest.mark.parametrize(
    "channel",
    ["", "private-", "presence-", "private-room#1", "private-" + "x" * 200, "privé-room"],
)
async def test_malformed_channel_is_400_invalid_channel(
    http: httpx.AsyncClient, relay_token: Callable[..., str], channel: str
) -> None:
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": channel},
        headers=_bearer(relay_token("alice")),
    )
    _assert_problem(response, 400, "invalid-channel")


async def test_encrypted_channels_are_refused_by_the_local_provider(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "private-encrypted-room"},
        headers=_bearer(relay_token("alice")),
    )
    _assert_problem(response, 400, "invalid-channel")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data; boundary=x", "application/xml"]
)
async def test_unsupported_content_type_is_400(
    http: httpx.AsyncClient, relay_token: Callable[..., str], content_type: str
) -> None:
    response = await http.post(
        "/auth/channel",
        content=b"socket_id=1234.5678&channel_name=private-room",
        headers={**_bearer(relay_token("alice")), "Content-Type": content_type},
    )
    body = _assert_problem(response, 400, "invalid-request")
    assert "auth" not in body


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"a string"'])
async def test_json_body_that_is_not_an_object_is_400(
    http: httpx.AsyncClient, relay_token: Callable[..., str], content: bytes
) -> None:
    response = await http.post(
        "/auth/channel",
        content=content,
        headers={**_bearer(relay_token("alice")), "Content-Type": "application/json"},
    )
    _assert_problem(response, 400, "invalid-request")


async def test_expired_token_is_401_invalid_token_and_never_echoed(
    http: httpx.AsyncClient, relay_settings: Settings
) -> None:
    token = mint_dev_token(relay_settings, user_id="alice", ttl=60, now=time.time() - 3600)
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "private-room"},
        headers=_bearer(token),
    )
    body = _assert_problem(response, 401, "invalid-token")
    assert "expired" in body["detail"]
    assert token not in response.text
    for segment in token.split("."):
        assert segment not in response.text


async def test_token_with_a_bad_signature_is_never_echoed(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    header, payload, _ = relay_token("alice").split(".")
    forged = f"{header}.{payload}.c2lnbmF0dXJlLW9mLWEtZm9yZ2Vy"
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "private-room"},
        headers=_bearer(forged),
    )
    _assert_problem(response, 401, "invalid-token")
    assert payload not in response.text
    assert "c2lnbmF0dXJlLW9mLWEtZm9yZ2Vy" not in response.text


async def test_user_auth_returns_signed_user_data(
    http: httpx.AsyncClient, relay_settings: Settings, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/user",
        data={"socket_id": SOCKET},
        headers=_bearer(relay_token("alice", name="Alice")),
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"auth", "user_data"}
    assert orjson.loads(body["user_data"]) == {"id": "alice", "user_info": {"name": "Alice"}}
    assert body["auth"] == signing.user_auth(
        "unit-key", _secret(relay_settings), socket_id=SOCKET, user_data=body["user_data"]
    )
    assert signing.verify_user_auth(
        "unit-key",
        _secret(relay_settings),
        body["auth"],
        socket_id=SOCKET,
        user_data=body["user_data"],
    )


async def test_user_auth_with_json_body_matches_form_body(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    token = relay_token("alice", name="Alice")
    form = await http.post("/auth/user", data={"socket_id": SOCKET}, headers=_bearer(token))
    json_ = await http.post("/auth/user", json={"socket_id": SOCKET}, headers=_bearer(token))
    assert form.status_code == json_.status_code == 200
    assert form.json() == json_.json()


async def test_user_auth_for_anonymous_is_401(http: httpx.AsyncClient) -> None:
    response = await http.post("/auth/user", data={"socket_id": SOCKET})
    _assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_user_auth_for_a_backend_is_401(http: httpx.AsyncClient, relay_api_key: str) -> None:
    response = await http.post(
        "/auth/user", data={"socket_id": SOCKET}, headers={"X-API-Key": relay_api_key}
    )
    _assert_problem(response, 401, "unauthenticated")


async def test_user_auth_with_malformed_socket_id_is_400(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/user", data={"socket_id": "nope"}, headers=_bearer(relay_token("alice"))
    )
    _assert_problem(response, 400, "invalid-socket-id")


async def test_presence_user_info_over_the_limit_is_refused_before_signing(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    token = relay_token("alice", name="A" * 1100)
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "presence-lobby"},
        headers=_bearer(token),
    )
    body = _assert_problem(response, 413, "payload-too-large")
    assert "auth" not in body
    assert "AAAAAAAA" not in response.text


async def test_user_auth_user_info_over_the_limit_is_refused(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await http.post(
        "/auth/user",
        data={"socket_id": SOCKET},
        headers=_bearer(relay_token("alice", name="A" * 1100)),
    )
    _assert_problem(response, 413, "payload-too-large")


async def test_too_many_form_fields_are_refused(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    fields = {"socket_id": SOCKET, "channel_name": "private-room"}
    fields.update({f"f{i}": "x" for i in range(40)})
    response = await http.post("/auth/channel", data=fields, headers=_bearer(relay_token("a")))
    _assert_problem(response, 400, "invalid-request")


async def test_two_credentials_at_once_are_refused(
    http: httpx.AsyncClient, relay_token: Callable[..., str], relay_api_key: str
) -> None:
    response = await http.post(
        "/auth/channel",
        data={"socket_id": SOCKET, "channel_name": "private-room"},
        headers={**_bearer(relay_token("alice")), "X-API-Key": relay_api_key},
    )
    _assert_problem(response, 401, "invalid-token")
    assert relay_api_key not in response.text


async def test_a_form_naming_a_field_twice_is_refused(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    # Which channel_name was meant would be a guess (the last one used to count).
    body = f"socket_id={SOCKET}&channel_name=private-room&channel_name=private-other"
    response = await http.post(
        "/auth/channel",
        content=body.encode(),
        headers={
            **_bearer(relay_token("alice")),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    _assert_problem(response, 400, "invalid-request")


async def test_a_single_provider_relay_takes_its_own_name_and_refuses_another(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    fields = {"socket_id": SOCKET, "channel_name": "private-room"}
    token = _bearer(relay_token("alice"))
    plain = await http.post("/auth/channel", data=fields, headers=token)
    named = await http.post("/auth/channel?provider=local", data=fields, headers=token)
    assert named.status_code == 200
    assert named.json() == plain.json()
    other = await http.post("/auth/channel?provider=pusher", data=fields, headers=token)
    assert "local" in _assert_problem(other, 400, "invalid-request")["detail"]
