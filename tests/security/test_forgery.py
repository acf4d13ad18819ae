"""Forgeries, on every provider the registry can build: each is refused with the right problem,
and none changes state (nothing published, stored, delivered, or added to a presence roster).

Each group starts from a control that succeeds, so a refusal is the forgery's doing, not the
harness's. Signatures are computed here from the published formats (Pusher, Ably, JWS), not with
the relay's own signing code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm
from websockets.asyncio.client import ClientConnection, connect

from core.errors import ConfigurationError
from core.provider import Provider
from tests.security.conftest import (
    ABLY_KEY_NAME,
    ABLY_SECRET,
    API_HEADERS,
    API_KEY,
    APP_ID,
    APP_KEY,
    APP_SECRET,
    KID,
    PROBLEM,
    PROBLEM_PREFIX,
    PUSHER_KEY,
    PUSHER_SECRET,
    SECRETS,
    SOCKET_ID,
    SUPABASE_JWT_SECRET,
    Availability,
    Target,
    b64url,
    bearer,
    claims,
    ec_key,
    hs256,
    other_rsa_key,
    registry_params,
    rs256,
    rsa_key,
    serve,
    user_token,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import httpx


def assert_problem(
    response: httpx.Response, status: int, slug: str, detail: str | tuple[str, ...] | None = None
) -> dict[str, Any]:
    """An RFC 9457 answer of this status and type, with no secret in it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_PREFIX + slug, body
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    if detail is not None:
        assert body["detail"] in ((detail,) if isinstance(detail, str) else detail), body
    for secret in SECRETS:
        assert secret not in response.text
    return body


# -- the registry ------------------------------------------------------------------------------
@pytest.mark.parametrize("found", registry_params())
def test_registry_builds_or_refuses(found: Availability) -> None:
    if found.built:
        from providers.registry import provider_class

        cls = provider_class(found.name)
        assert issubclass(cls, Provider)
        assert cls.name == found.name
    else:
        # Not built yet: the registry must say so with a ConfigurationError naming the variable.
        assert isinstance(found.error, ConfigurationError), repr(found.error)
        assert str(found.error).startswith("RELAY_PROVIDER:")


# -- JWTs --------------------------------------------------------------------------------------
def _compact(header: dict[str, Any], payload: dict[str, Any], signature: str = "c2ln") -> str:
    """A JWS in compact form with any header (PyJWT refuses to write some), signature as given."""
    return f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(payload))}.{signature}"


def _none_token(alg: str, *, signature: str = "") -> str:
    header = b64url(orjson.dumps({"alg": alg, "typ": "JWT"}))
    payload = b64url(orjson.dumps(claims()))
    return f"{header}.{payload}.{signature}"


def _hs256_with_public_key() -> str:
    """The key-confusion attack: HS256 whose HMAC key is the identity provider's RSA public key."""
    pem = (
        rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64url(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}))
    payload = b64url(orjson.dumps(claims()))
    signing_input = f"{header}.{payload}".encode()
    return f"{header}.{payload}.{b64url(hmac.new(pem, signing_input, hashlib.sha256).digest())}"


def _tampered_payload() -> str:
    header, _, signature = user_token("alice").split(".")
    return f"{header}.{b64url(orjson.dumps(claims('bob')))}.{signature}"


def _truncated_signature() -> str:
    return user_token("alice")[:-4]


def _stripped_signature() -> str:
    header, payload, _ = user_token("alice").split(".")
    return f"{header}.{payload}."


def _es256_under_rsa_kid() -> str:
    return jwt.encode(claims(), ec_key(), algorithm="ES256", headers={"kid": KID})


def _rs256_with_headers(**headers: Any) -> str:
    """Signed by a key the identity provider never published, with extra JOSE headers."""
    return jwt.encode(claims(), other_rsa_key(), algorithm="RS256", headers={"kid": KID, **headers})


def _attacker_jwk() -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(other_rsa_key().public_key(), as_dict=True)
    return jwk


def _now() -> int:
    return int(time.time())


JWT_FORGERIES: list[Any] = [
    pytest.param(
        lambda: user_token(exp=_now() - 3600, iat=_now() - 7200, nbf=_now() - 7200),
        "token expired",
        id="expired",
    ),
    pytest.param(
        lambda: user_token(exp=_now() - 11, iat=_now() - 600, nbf=_now() - 600),
        "token expired",
        id="expired-just-past-leeway",
    ),
    pytest.param(
        lambda: user_token(nbf=_now() + 3600, exp=_now() + 4000),
        "token not yet valid",
        id="not-yet-valid",
    ),
    pytest.param(
        lambda: user_token(iat=_now() + 3600, nbf=None, exp=_now() + 4000),
        "token issued in the future",
        id="issued-in-the-future",
    ),
    pytest.param(
        lambda: user_token(exp=_now() + 3 * 24 * 3600),
        "token lifetime exceeds the maximum",
        id="lifetime-over-the-maximum",
    ),
    pytest.param(lambda: _none_token("none"), "unsupported algorithm", id="alg-none"),
    pytest.param(lambda: _none_token("None"), "unsupported algorithm", id="alg-None"),
    pytest.param(
        lambda: _none_token("none", signature=user_token().rsplit(".", 1)[1]),
        "unsupported algorithm",
        id="alg-none-with-a-signature",
    ),
    pytest.param(
        lambda: jwt.encode(claims(), rsa_key(), algorithm="RS384", headers={"kid": KID}),
        "unsupported algorithm",
        id="alg-RS384",
    ),
    pytest.param(_hs256_with_public_key, "bad signature", id="hs256-signed-with-rsa-public-key"),
    pytest.param(
        lambda: hs256(claims(), "another-secret-of-32-bytes-or-more-0123"),
        "bad signature",
        id="hs256-other-secret",
    ),
    pytest.param(
        lambda: rs256(claims(), kid="forge-rsa-0"), "unknown key id", id="rs256-wrong-kid"
    ),
    pytest.param(
        lambda: rs256(claims(), key=other_rsa_key()),
        "bad signature",
        id="rs256-other-key-under-our-kid",
    ),
    pytest.param(_es256_under_rsa_kid, "algorithm does not match key", id="es256-under-an-rsa-kid"),
    pytest.param(
        lambda: _rs256_with_headers(jku="http://127.0.0.1:9/attacker-jwks.json"),
        "bad signature",
        id="jku-pointing-elsewhere",
    ),
    pytest.param(
        lambda: _rs256_with_headers(jwk=_attacker_jwk()), "bad signature", id="embedded-jwk"
    ),
    pytest.param(
        lambda: _compact({"alg": "RS256", "kid": 7}, claims()),
        ("malformed token", "malformed key id"),
        id="kid-not-a-string",
    ),
    pytest.param(lambda: user_token(iss="https://evil.test/"), "wrong issuer", id="wrong-issuer"),
    pytest.param(lambda: user_token(iss=None), "missing iss claim", id="missing-issuer"),
    pytest.param(lambda: user_token(aud="another-service"), "wrong audience", id="wrong-audience"),
    pytest.param(
        lambda: user_token(aud=["another-service", "a-third"]),
        "wrong audience",
        id="audience-list-without-ours",
    ),
    pytest.param(lambda: user_token(aud=None), "missing aud claim", id="missing-audience"),
    pytest.param(lambda: rs256(claims(iss="https://evil.test/")), "wrong issuer", id="rs256-iss"),
    pytest.param(_tampered_payload, "bad signature", id="payload-swapped-after-signing"),
    pytest.param(
        _truncated_signature, ("bad signature", "malformed token"), id="signature-truncated"
    ),
    pytest.param(_stripped_signature, "bad signature", id="signature-stripped"),
    pytest.param(lambda: hs256(claims(sub=None)), "missing sub claim", id="missing-sub"),
    pytest.param(lambda: user_token(sub=""), "invalid sub claim", id="empty-sub"),
    pytest.param(lambda: user_token(exp=None), "missing exp claim", id="missing-exp"),
    pytest.param(lambda: user_token(exp="tomorrow"), "invalid exp claim", id="exp-not-a-number"),
    pytest.param(lambda: "bm90IGpzb24.bm90IGpzb24.c2ln", "malformed token", id="header-not-json"),
    pytest.param(
        lambda: "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", "bad signature", id="payload-not-json"
    ),
    pytest.param(lambda: user_token(pad="x" * 9000), "credential too long", id="over-8-kib"),
]


async def test_valid_tokens_pass_every_gate(target: Target) -> None:
    """The control: HS256 and RS256 tokens get a signature or token, and may publish."""
    for token in (user_token("alice"), rs256(claims("alice"))):
        answer = await target.user_probe(token)
        assert answer.status_code == 200, answer.text
    published = await target.publish(bearer(user_token("alice")))
    assert published.status_code == 200, published.text
    assert [m.channel for m in target.published] == ["open-forge"]
    assert target.store.writes  # the idempotency record of a real publish is seen


@pytest.mark.parametrize(("forge", "detail"), JWT_FORGERIES)
async def test_forged_jwts_are_refused_and_change_nothing(
    target: Target, forge: Callable[[], str], detail: str | tuple[str, ...]
) -> None:
    token = forge()
    probe = await target.user_probe(token)
    assert_problem(probe, 401, "invalid-token", detail)
    assert 'error="invalid_token"' in probe.headers["www-authenticate"]
    published = await target.publish(bearer(token))
    assert_problem(published, 401, "invalid-token", detail)
    members = await target.http.get("/v1/channels/presence-room/members", headers=bearer(token))
    assert_problem(members, 401, "invalid-token", detail)
    target.assert_untouched()


async def test_hs256_is_refused_when_only_a_jwks_is_trusted(
    make_target: Callable[..., contextlib.AbstractAsyncContextManager[Target]],
) -> None:
    async with make_target("local", jwt_secret=None) as target:
        assert (await target.user_probe(rs256(claims("alice")))).status_code == 200
        for token in (_hs256_with_public_key(), user_token("alice")):
            assert_problem(
                await target.user_probe(token), 401, "invalid-token", "unsupported algorithm"
            )
        target.assert_untouched()


API_KEY_FORGERIES = [
    pytest.param({"X-API-Key": API_KEY[:-1]}, "invalid API key", id="truncated"),
    pytest.param({"X-API-Key": API_KEY + "0"}, "invalid API key", id="extended"),
    pytest.param({"X-API-Key": API_KEY.upper()}, "invalid API key", id="case-changed"),
    pytest.param({"X-API-Key": " "}, "invalid API key", id="blank"),
    pytest.param(
        {"X-API-Key": API_KEY, "Authorization": f"Bearer {user_token()}"},
        "more than one credential presented",
        id="two-credentials",
    ),
    pytest.param(
        {"Authorization": f"Basic {API_KEY}"}, "unsupported authorization scheme", id="basic"
    ),
]


@pytest.mark.parametrize(("headers", "detail"), API_KEY_FORGERIES)
async def test_forged_api_keys_are_refused(
    target: Target, headers: dict[str, str], detail: str
) -> None:
    assert (await target.publish(API_HEADERS, key=None)).status_code == 200
    target.published.clear()
    target.store.writes.clear()
    if target.listener is not None:
        target.listener.deliveries.clear()
    assert_problem(await target.publish(headers), 401, "invalid-token", detail)
    # A key in the query string would end up in logs: refused even when it is the right one.
    query = await target.http.post(
        f"/v1/events?token={API_KEY}", json={"name": "e", "channel": "open-forge", "data": 1}
    )
    assert_problem(query, 401, "invalid-token")
    target.assert_untouched()


# -- channel names -----------------------------------------------------------------------------
BAD_CHANNELS = [
    pytest.param("private-user-alice:other", id="colon"),
    pytest.param("private-user-alice\n", id="trailing-newline"),
    pytest.param("private-user-alice\r\nprivate-user-bob", id="crlf"),
    pytest.param("private-user-alice\x00private-user-bob", id="nul"),
    pytest.param("private-user-alice ", id="trailing-space"),
    pytest.param("private-user-alice#private-user-bob", id="hash"),
    pytest.param("private-user-alice/private-user-bob", id="slash"),
    pytest.param("private-user-alice%0A", id="percent-encoded"),
    pytest.param("private-user-\u0430lice", id="cyrillic-a"),
    pytest.param("\uff50rivate-user-alice", id="fullwidth-p"),
    pytest.param("private\u2010user-alice", id="unicode-hyphen"),
    pytest.param("private-user-alice\u200b", id="zero-width-space"),
    pytest.param("private-user-ALICE\u0307", id="combining-dot"),
    pytest.param("#server-to-user-alice", id="server-to-user"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("channel", BAD_CHANNELS)
async def test_channel_names_with_injected_characters_are_refused(
    target: Target, channel: str
) -> None:
    signed = await target.authorize(user_token("alice"), channel)
    assert_problem(signed, 400, "invalid-channel")
    assert "auth" not in signed.json()
    assert_problem(await target.publish(API_HEADERS, channel), 400, "invalid-channel")
    batch = await target.http.post(
        "/v1/batch",
        json={"batch": [{"name": "ok", "channel": "open-forge", "data": 1},
                        {"name": "bad", "channel": channel, "data": 2}]},
        headers={**API_HEADERS, "Idempotency-Key": "forge-batch"},
    )  # fmt: skip
    assert_problem(batch, 400, "invalid-channel")  # and the valid first event is not sent either
    target.assert_untouched()


async def test_over_long_channel_names_are_refused(target: Target) -> None:
    limit = target.provider.limits.max_channel_name
    longest = "private-user-" + "a" * (limit - len("private-user-"))
    assert len(longest) == limit
    assert (
        await target.authorize(user_token(longest[len("private-user-") :]), longest)
    ).status_code in (
        200,
        501,
    )
    channel = longest + "a"
    body = assert_problem(
        await target.authorize(user_token("alice"), channel), 400, "invalid-channel"
    )
    assert body["limit"] == limit
    assert_problem(await target.publish(API_HEADERS, channel), 400, "invalid-channel")
    assert_problem(await target.publish(API_HEADERS, "a" * 100_000), 400, "invalid-channel")
    target.assert_untouched()


async def test_a_list_separator_inside_a_name_is_one_other_channel(target: Target) -> None:
    """`,` and `;` are channel characters: such a name is one channel, never a list of them."""
    for channel in ("private-user-alice,private-user-bob", "private-user-alice;private-user-bob"):
        # Alice's own-channel rule binds {id} to everything after the prefix: not alice.
        assert_problem(await target.authorize(user_token("alice"), channel), 403, "forbidden")
    target.assert_untouched()
    # A backend may publish to it, and it reaches exactly that one channel.
    published = await target.publish(API_HEADERS, "private-user-alice,private-user-bob")
    assert published.status_code == 200, published.text
    assert [m.channel for m in target.published] == ["private-user-alice,private-user-bob"]
    if target.listener is not None:
        assert target.listener.events() == []  # neither alice's nor bob's channel got it


async def test_a_user_cannot_get_another_users_channel_signed(target: Target) -> None:
    assert_problem(
        await target.authorize(user_token("bob"), "private-user-alice"), 403, "forbidden"
    )
    assert_problem(await target.authorize(None, "private-user-alice"), 401, "unauthenticated")
    assert_problem(await target.authorize(None, "presence-room"), 401, "unauthenticated")
    # Publishing is a backend's: a user may not publish on a channel only backends publish to.
    assert_problem(await target.publish(bearer(user_token("alice")), "private-user-alice"), 403,
                   "forbidden")  # fmt: skip
    target.assert_untouched()


async def test_an_idempotency_key_is_scoped_to_its_caller(target: Target) -> None:
    """Another caller reusing a key neither replays the first answer nor is refused for it."""
    first = await target.publish(API_HEADERS, key="shared-key")
    assert first.status_code == 200, first.text
    again = await target.publish(API_HEADERS, key="shared-key")
    assert again.headers.get("idempotent-replayed") == "true"
    other = await target.publish(bearer(user_token("alice")), key="shared-key")
    assert other.status_code == 200, other.text
    assert "idempotent-replayed" not in other.headers
    assert len(target.published) == 2  # the backend's once, alice's once


# -- socket ids --------------------------------------------------------------------------------
BAD_SOCKET_IDS = [
    pytest.param("", id="empty"),
    pytest.param("1234", id="no-dot"),
    pytest.param("1234.", id="no-second-part"),
    pytest.param(".5678", id="no-first-part"),
    pytest.param("1.2.3", id="three-parts"),
    pytest.param("-1.2", id="negative"),
    pytest.param("1.2 ", id="trailing-space"),
    pytest.param("1.2\n", id="trailing-newline"),
    pytest.param("1.2:private-user-bob", id="signature-input-injection"),
    pytest.param("1.2:presence-room:{}", id="presence-input-injection"),
    pytest.param("abc.def", id="letters"),
    pytest.param("\u0661\u0662.\u0663\u0664", id="arabic-indic-digits"),
    pytest.param("\uff11.\uff12", id="fullwidth-digits"),
    pytest.param("1" * 21 + ".1", id="21-digits"),
    pytest.param("1.2\x00", id="nul"),
]


@pytest.mark.parametrize("socket_id", BAD_SOCKET_IDS)
async def test_malformed_socket_ids_are_refused(target: Target, socket_id: str) -> None:
    alice = user_token("alice")
    signed = await target.authorize(alice, "private-user-alice", socket_id=socket_id)
    assert_problem(signed, 400, "invalid-socket-id")
    user = await target.http.post(
        "/auth/user", data={"socket_id": socket_id}, headers=bearer(alice)
    )
    assert_problem(user, 400, "invalid-socket-id")
    as_json = await target.http.post(
        "/auth/channel",
        json={"socket_id": socket_id, "channel_name": "private-user-alice"},
        headers=bearer(alice),
    )
    assert_problem(as_json, 400, "invalid-socket-id")
    excluded = await target.publish(API_HEADERS, socket_id=socket_id)
    assert_problem(excluded, 400, "invalid-socket-id")
    target.assert_untouched()


async def test_a_socket_id_that_is_not_a_string_is_refused(target: Target) -> None:
    for value in (1234.5678, ["1.2"], {"a": "1.2"}, None, True):
        answer = await target.http.post(
            "/auth/channel",
            json={"socket_id": value, "channel_name": "private-user-alice"},
            headers=bearer(user_token("alice")),
        )
        assert_problem(answer, 400, "invalid-socket-id")
    target.assert_untouched()


# -- presence identity -------------------------------------------------------------------------
SPOOF_FIELDS = {
    "channel_data": '{"user_id":"admin","user_info":{"name":"Admin","role":"admin"}}',
    "user_id": "admin",
    "user_info": '{"name":"Admin"}',
    "clientId": "admin",
}
# Claims a user could have in a token; presence shares only what the policy names ("name").
EXTRA_CLAIMS = {"user_id": "admin", "user_info": {"role": "admin"}, "role": "service_role"}
# Keys the Pusher-style signers use, so the answers can be checked here.
CHANNEL_SIGNERS = {
    "local": (APP_KEY, APP_SECRET),
    "pusher": (PUSHER_KEY, PUSHER_SECRET),
    "apigateway": (APP_KEY, APP_SECRET),
}


def _pusher_auth(key: str, secret: str, message: str) -> str:
    return f"{key}:{hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()}"


async def test_a_client_cannot_choose_its_presence_identity(target: Target) -> None:
    """The relay signs the token's sub and the policy's claims, whatever else is sent."""
    token = user_token("alice", **EXTRA_CLAIMS)
    if target.name == "appsync":  # no presence: the identity the handlers see is the token's
        probe = await target.user_probe(token)
        assert probe.status_code == 200, probe.text
        from providers.appsync.identity import ID

        assert probe.json()["handlerContext"][ID] == "alice"
        target.assert_untouched()
        return
    answer = await target.authorize(token, "presence-room", **SPOOF_FIELDS)
    if answer.status_code == 501:
        await _token_provider_identity(target, token)
        return
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert orjson.loads(body["channel_data"]) == {
        "user_id": "alice",
        "user_info": {"name": "Alice"},
    }
    assert target.name in CHANNEL_SIGNERS, f"teach the suite {target.name}'s channel signing keys"
    key, secret = CHANNEL_SIGNERS[target.name]
    signed = f"{SOCKET_ID}:presence-room:{body['channel_data']}"
    assert body["auth"] == _pusher_auth(key, secret, signed)
    # What a server checks: the signature does not cover any other identity.
    spoofed = f"{SOCKET_ID}:presence-room:{SPOOF_FIELDS['channel_data']}"
    assert body["auth"] != _pusher_auth(key, secret, spoofed)
    user = await target.http.post("/auth/user", data={"socket_id": SOCKET_ID, **SPOOF_FIELDS},
                                  headers=bearer(token))  # fmt: skip
    assert user.status_code == 200, user.text
    assert orjson.loads(user.json()["user_data"]) == {"id": "alice", "user_info": {"name": "Alice"}}
    target.assert_untouched()


async def _token_provider_identity(target: Target, token: str) -> None:
    answer = await target.http.post(
        "/auth/token?clientId=admin&client_id=admin", json=SPOOF_FIELDS, headers=bearer(token)
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if target.name == "ably":
        assert body["clientId"] == "alice"
        assert body["keyName"] == ABLY_KEY_NAME
        assert "admin" not in body["capability"]
    elif target.name == "supabase":
        minted = jwt.decode(
            body["access_token"],
            SUPABASE_JWT_SECRET,
            algorithms=["HS256"],
            audience="authenticated",
        )
        assert minted["sub"] == "alice"
        assert minted["role"] == "authenticated"  # never the service_role claimed in the token
        assert "user_id" not in minted
    else:
        raise AssertionError(f"teach the suite how {target.name} carries a client's identity")
    target.assert_untouched()


# -- the Pusher HTTP API (served by the local provider) ------------------------------------------
def _pusher_signed(
    method: str,
    path: str,
    body: bytes,
    *,
    key: str = APP_KEY,
    secret: str = APP_SECRET,
    timestamp: int | None = None,
    version: str = "1.0",
) -> dict[str, str]:
    """Query parameters signing an HTTP API request, per Pusher's published algorithm."""
    params = {
        "auth_key": key,
        "auth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "auth_version": version,
    }
    if body:
        params["body_md5"] = hashlib.md5(body, usedforsecurity=False).hexdigest()
    query = "&".join(f"{k}={params[k]}" for k in sorted(params))
    message = f"{method}\n{path}\n{query}"
    params["auth_signature"] = hmac.new(
        secret.encode(), message.encode(), hashlib.sha256
    ).hexdigest()
    return params


EVENTS_PATH = f"/apps/{APP_ID}/events"
HTTP_BODY = orjson.dumps({"name": "forged", "channel": "open-forge", "data": "{}"})
OTHER_BODY = orjson.dumps({"name": "forged", "channel": "private-user-bob", "data": "{}"})


def _flip(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


HTTP_FORGERIES = [
    "signature-tampered",
    "signature-truncated",
    "signature-upper-cased",
    "signature-missing",
    "signature-empty",
    "body-swapped",
    "body-swapped-md5-fixed",
    "body-md5-dropped",
    "parameter-added",
    "auth-key-swapped",
    "replayed-on-another-path",
]


def _forge_http(case: str) -> tuple[dict[str, str], bytes, str]:
    """A request signed for HTTP_BODY on EVENTS_PATH, then altered as `case` says."""
    params = _pusher_signed("POST", EVENTS_PATH, HTTP_BODY)
    signature = params["auth_signature"]
    body, path = HTTP_BODY, EVENTS_PATH
    if case == "signature-tampered":
        params["auth_signature"] = _flip(signature)
    elif case == "signature-truncated":
        params["auth_signature"] = signature[:-8]
    elif case == "signature-upper-cased":
        params["auth_signature"] = signature.upper()
    elif case == "signature-missing":
        del params["auth_signature"]
    elif case == "signature-empty":
        params["auth_signature"] = ""
    elif case == "body-swapped":
        body = OTHER_BODY
    elif case == "body-swapped-md5-fixed":
        body = OTHER_BODY
        params["body_md5"] = hashlib.md5(OTHER_BODY, usedforsecurity=False).hexdigest()
    elif case == "body-md5-dropped":
        del params["body_md5"]
    elif case == "parameter-added":
        params["channel"] = "private-user-bob"
    elif case == "auth-key-swapped":
        params["auth_key"] = "another-key"
    elif case == "replayed-on-another-path":
        path = f"/apps/{APP_ID}/batch_events"
    else:
        raise AssertionError(case)
    return params, body, path


async def test_signed_pusher_http_api_calls_are_accepted(local_target: Target) -> None:
    params = _pusher_signed("POST", EVENTS_PATH, HTTP_BODY)
    answer = await local_target.http.post(EVENTS_PATH, params=params, content=HTTP_BODY)
    assert answer.status_code == 200, answer.text
    assert local_target.listener is not None
    assert local_target.listener.events() == [("open-forge", "forged", "{}")]


@pytest.mark.parametrize("case", HTTP_FORGERIES)
async def test_forged_pusher_http_api_calls_are_refused(local_target: Target, case: str) -> None:
    params, body, path = _forge_http(case)
    answer = await local_target.http.post(path, params=params, content=body)
    assert_problem(answer, 401, "invalid-signature")
    local_target.assert_untouched()


STALE = "auth_timestamp is more than 600 s off"


@pytest.mark.parametrize(
    ("signed", "detail"),
    [
        pytest.param({"timestamp": -601}, STALE, id="stale-601s"),
        pytest.param({"timestamp": -3600}, STALE, id="replayed-1h"),
        pytest.param({"timestamp": 601}, STALE, id="future-601s"),
        pytest.param({"secret": "another-secret-0123456789"}, "auth_signature does not match",
                     id="other-secret"),
        pytest.param({"key": "another-key"}, "auth_key is not this app's key", id="other-key"),
        pytest.param({"version": "2.0"}, "auth_version must be 1.0", id="auth-version-2"),
        pytest.param({"method": "GET"}, "auth_signature does not match", id="signed-as-get"),
    ],
)  # fmt: skip
async def test_replayed_and_missigned_pusher_http_api_calls_are_refused(
    local_target: Target, signed: dict[str, Any], detail: str
) -> None:
    offset = signed.pop("timestamp", 0)
    method = signed.pop("method", "POST")
    params = _pusher_signed(method, EVENTS_PATH, HTTP_BODY, timestamp=int(time.time()) + offset,
                            **signed)  # fmt: skip
    answer = await local_target.http.post(EVENTS_PATH, params=params, content=HTTP_BODY)
    assert_problem(answer, 401, "invalid-signature", detail)
    query = await local_target.http.get(
        f"/apps/{APP_ID}/channels/open-forge",
        params=_pusher_signed("GET", f"/apps/{APP_ID}/channels/open-forge", b"",
                              timestamp=int(time.time()) + offset, **signed) | {"x": "1"},
    )  # fmt: skip
    assert_problem(query, 401, "invalid-signature")
    local_target.assert_untouched()


async def test_a_pusher_http_api_call_for_another_app_is_not_found(local_target: Target) -> None:
    path = "/apps/9999/events"
    answer = await local_target.http.post(
        path, params=_pusher_signed("POST", path, HTTP_BODY), content=HTTP_BODY
    )
    assert_problem(answer, 404, "not-found")
    local_target.assert_untouched()


# -- the local WebSocket: signatures presented by other sockets, for other channels --------------
class Socket:
    """A Pusher protocol client on the local provider's WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.socket_id = ""

    async def next(self, within: float = 3.0) -> dict[str, Any]:
        """The next frame."""
        frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.ws.recv(), within))
        return frame

    async def send(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Send a frame; return the answer."""
        await self.ws.send(orjson.dumps({"event": event, "data": data}).decode())
        return await self.next()

    async def quiet(self, within: float = 0.2) -> None:
        """Nothing more arrives for a while."""
        try:
            frame = await self.next(within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame}")


@contextlib.asynccontextmanager
async def _sockets(port: int, count: int) -> AsyncIterator[list[Socket]]:
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for _ in range(count):
            url = f"ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7"
            ws = await stack.enter_async_context(connect(url, ping_interval=None, open_timeout=5))
            sock = Socket(ws)
            hello = await sock.next()
            assert hello["event"] == "pusher:connection_established"
            sock.socket_id = orjson.loads(hello["data"])["socket_id"]
            sockets.append(sock)
        yield sockets


def _refused(frame: dict[str, Any], channel: str, status: int) -> None:
    assert frame["event"] == "pusher:subscription_error", frame
    assert frame["channel"] == channel
    assert frame["data"]["status"] == status


async def test_channel_signatures_are_bound_to_their_socket_and_channel(
    local_target: Target,
) -> None:
    target = local_target
    assert target.local is not None
    alice = user_token("alice")
    async with serve(target.app) as port, _sockets(port, 2) as (mine, other):
        answer = await target.authorize(alice, "private-user-alice", socket_id=mine.socket_id)
        assert answer.status_code == 200, answer.text
        auth: str = answer.json()["auth"]
        key, _, signature = auth.partition(":")
        attempts: list[tuple[Socket, str, object]] = [
            (other, "private-user-alice", auth),  # another socket replays it
            (mine, "private-user-bob", auth),  # another channel
            (mine, "private-user-alice,private-user-bob", auth),
            (mine, "private-user-alice", auth[:-1]),  # truncated
            (mine, "private-user-alice", auth[:-32]),
            (mine, "private-user-alice", _flip(auth)),  # tampered
            (mine, "private-user-alice", auth.upper()),
            (mine, "private-user-alice", f"another-key:{signature}"),
            (mine, "private-user-alice", signature),  # key part dropped
            (mine, "private-user-alice", f"{key}:"),
            (mine, "private-user-alice", [auth]),
            (mine, "private-user-alice", 0),
            (mine, "private-user-alice", None),
        ]
        for sock, channel, forged in attempts:
            frame = await sock.send("pusher:subscribe", {"channel": channel, "auth": forged})
            _refused(frame, channel, 401)
        # A server-to-user channel is only for the socket signed in as that user.
        frame = await other.send("pusher:subscribe", {"channel": "#server-to-user-alice"})
        _refused(frame, "#server-to-user-alice", 403)
        for channel in ("private-user-alice", "private-user-bob"):
            assert target.local.hub.subscriber_count(channel) == 1  # the listener only
        assert target.local.hub.subscriber_count("#server-to-user-alice") == 0
        published = await target.publish(API_HEADERS, "private-user-alice", key=None)
        assert published.status_code == 200
        await other.quiet()
        # The control: the socket it was signed for subscribes and receives.
        frame = await mine.send("pusher:subscribe", {"channel": "private-user-alice", "auth": auth})
        assert frame["event"] == "pusher_internal:subscription_succeeded", frame
        await target.publish(API_HEADERS, "private-user-alice", key=None)
        assert (await mine.next())["channel"] == "private-user-alice"
        await other.quiet()


async def test_presence_channel_data_altered_after_signing_is_refused(
    local_target: Target,
) -> None:
    target = local_target
    assert target.local is not None
    token = user_token("alice")
    async with serve(target.app) as port, _sockets(port, 2) as (mine, other):
        answer = await target.authorize(token, "presence-room", socket_id=mine.socket_id)
        assert answer.status_code == 200, answer.text
        auth, channel_data = answer.json()["auth"], answer.json()["channel_data"]
        forged_data = [
            '{"user_id":"admin","user_info":{"name":"Alice"}}',
            '{"user_id":"alice","user_info":{"name":"Admin"}}',
            '{"user_id":"alice","user_info":{"name":"Alice","role":"admin"}}',
            channel_data.replace(":", ": "),  # same JSON, other bytes
            channel_data + " ",
        ]
        for data in forged_data:
            frame = await mine.send(
                "pusher:subscribe", {"channel": "presence-room", "auth": auth, "channel_data": data}
            )
            _refused(frame, "presence-room", 401)
        frame = await mine.send("pusher:subscribe", {"channel": "presence-room", "auth": auth})
        _refused(frame, "presence-room", 401)  # channel_data left out
        frame = await other.send(
            "pusher:subscribe",
            {"channel": "presence-room", "auth": auth, "channel_data": channel_data},
        )
        _refused(frame, "presence-room", 401)  # another socket
        assert target.members() == {}
        members = await target.http.get("/v1/channels/presence-room/members", headers=API_HEADERS)
        assert members.json()["members"] == []
        # A sign-in whose user_data was altered is refused too.
        signed = await target.http.post(
            "/auth/user", data={"socket_id": mine.socket_id}, headers=bearer(token)
        )
        user_data = signed.json()["user_data"]
        forged_user = user_data.replace('"alice"', '"admin"')
        frame = await mine.send(
            "pusher:signin", {"auth": signed.json()["auth"], "user_data": forged_user}
        )
        assert frame["event"] == "pusher:error", frame
        assert frame["data"]["code"] == 4009
        # The control: the data as signed joins, as alice with her name only.
        frame = await mine.send(
            "pusher:subscribe",
            {"channel": "presence-room", "auth": auth, "channel_data": channel_data},
        )
        assert frame["event"] == "pusher_internal:subscription_succeeded", frame
        assert target.members() == {"presence-room": ["alice"]}
        assert target.local.hub.members("presence-room")[0].user_info == {"name": "Alice"}


# -- webhooks ----------------------------------------------------------------------------------
def _takes_webhooks(provider: Provider) -> bool:
    return type(provider).parse_webhook is not Provider.parse_webhook


def _pusher_hook(now_ms: int) -> bytes:
    event = {"name": "member_added", "channel": "presence-room", "user_id": "intruder"}
    return orjson.dumps({"time_ms": now_ms, "events": [event]})


def _pusher_headers(
    body: bytes, *, key: str = PUSHER_KEY, secret: str = PUSHER_SECRET
) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Pusher-Key": key,
        "X-Pusher-Signature": signature,
    }


def _ably_hook(now_ms: int) -> bytes:
    presence = {"action": 2, "clientId": "intruder", "timestamp": now_ms}
    item = {
        "source": "channel.presence",
        "name": "presence.message",
        "timestamp": now_ms,
        "data": {"channelId": "presence-room", "presence": [presence]},
    }
    return orjson.dumps({"items": [item]})


def _ably_headers(
    body: bytes, *, key: str = ABLY_KEY_NAME, secret: str = ABLY_SECRET
) -> dict[str, str]:
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "X-Ably-Key": key, "X-Ably-Signature": signature}


class Signer:
    """How one provider signs its webhooks: the body, the headers, and where the signature is."""

    def __init__(
        self,
        body: Callable[[int], bytes],
        headers: Callable[..., dict[str, str]],
        signature_header: str,
        key_header: str,
    ) -> None:
        self.body = body
        self.headers = headers
        self.signature_header = signature_header
        self.key_header = key_header


SIGNERS = {
    "pusher": Signer(_pusher_hook, _pusher_headers, "X-Pusher-Signature", "X-Pusher-Key"),
    "ably": Signer(_ably_hook, _ably_headers, "X-Ably-Signature", "X-Ably-Key"),
}
ANY_SIGNER = SIGNERS["pusher"]


def _now_ms() -> int:
    return int(time.time() * 1000)


WEBHOOK_FORGERIES = [
    "no-signature",
    "empty-signature",
    "zeros",
    "body-tampered",
    "body-extended",
    "signature-truncated",
    "signature-tampered",
    "other-secret",
    "other-key",
    "signature-of-another-body",
]


def _forge_webhook(signer: Signer, case: str) -> tuple[bytes, dict[str, str]]:
    """A fresh webhook body signed as the provider signs it, then altered as `case` says."""
    body = signer.body(_now_ms())
    headers = signer.headers(body)
    name = signer.signature_header
    if case == "no-signature":
        headers = {"Content-Type": "application/json"}
    elif case == "empty-signature":
        headers[name] = ""
    elif case == "zeros":
        headers[name] = "0" * 64
    elif case == "body-tampered":
        body = body.replace(b"intruder", b"intrudes")
    elif case == "body-extended":
        body += b" "
    elif case == "signature-truncated":
        headers[name] = headers[name][:-4]
    elif case == "signature-tampered":
        headers[name] = _flip(headers[name])
    elif case == "other-secret":
        headers = signer.headers(body, secret="not-the-secret-0123456789")
    elif case == "other-key":
        headers = signer.headers(body, key="someone.elses")
    elif case == "signature-of-another-body":
        headers[name] = signer.headers(b"{}")[name]
    else:
        raise AssertionError(case)
    return body, headers


async def test_signed_webhooks_are_accepted(target: Target) -> None:
    """The control: a correctly signed webhook verifies (or the provider takes none: 501)."""
    if not _takes_webhooks(target.provider):
        answer = await target.http.post(f"/v1/webhooks/{target.name}", content=b"{}")
        assert_problem(answer, 501, "not-supported")
        return
    assert target.name in SIGNERS, f"teach the suite how {target.name} signs its webhooks"
    signer = SIGNERS[target.name]
    body = signer.body(_now_ms())
    answer = await target.http.post(f"/v1/webhooks/{target.name}", content=body,
                                    headers=signer.headers(body))  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert [(e["kind"], e["user_id"]) for e in answer.json()["events"]] == [
        ("member_added", "intruder")
    ]
    target.assert_untouched()  # a verified webhook is news, not a publish


@pytest.mark.parametrize("case", WEBHOOK_FORGERIES)
async def test_forged_webhooks_are_refused_and_change_nothing(target: Target, case: str) -> None:
    takes = _takes_webhooks(target.provider)
    body, headers = _forge_webhook(SIGNERS.get(target.name, ANY_SIGNER), case)
    answer = await target.http.post(f"/v1/webhooks/{target.name}", content=body, headers=headers)
    if takes:
        assert target.name in SIGNERS, f"teach the suite how {target.name} signs its webhooks"
        assert_problem(answer, 401, "invalid-signature")
    else:
        assert_problem(answer, 501, "not-supported")
    target.assert_untouched()


async def test_a_webhook_for_another_provider_is_not_found(target: Target) -> None:
    for other in ("pusher", "ably", "supabase", "local", "apigateway", "unknown"):
        if other == target.name:
            continue
        signer = SIGNERS.get(other, ANY_SIGNER)
        body = signer.body(_now_ms())
        answer = await target.http.post(f"/v1/webhooks/{other}", content=body,
                                        headers=signer.headers(body))  # fmt: skip
        assert_problem(answer, 404, "not-found")
    target.assert_untouched()


STALE_MS = 10 * 60 * 1000  # a webhook captured ten minutes ago


async def test_a_replayed_pusher_webhook_is_refused(
    make_target: Callable[..., contextlib.AbstractAsyncContextManager[Target]],
) -> None:
    async with make_target("pusher") as target:
        for offset in (-STALE_MS, STALE_MS):
            body = _pusher_hook(_now_ms() + offset)
            answer = await target.http.post("/v1/webhooks/pusher", content=body,
                                            headers=_pusher_headers(body))  # fmt: skip
            assert_problem(answer, 401, "invalid-signature")
        target.assert_untouched()


async def test_a_replayed_ably_webhook_is_refused(
    make_target: Callable[..., contextlib.AbstractAsyncContextManager[Target]],
) -> None:
    async with make_target("ably") as target:
        body = _ably_hook(_now_ms() - 6 * 3600 * 1000)
        answer = await target.http.post("/v1/webhooks/ably", content=body,
                                        headers=_ably_headers(body))  # fmt: skip
        assert_problem(answer, 401, "invalid-signature")
        target.assert_untouched()
