"""The identity gate: JWTs (HS256, RS256/ES256 via JWKS), API keys, and every way to fail."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from core.errors import InvalidToken, ProviderUnavailable
from core.identity import Authenticator
from core.principal import ANONYMOUS, PrincipalKind
from core.settings import Settings

NOW = 1_700_000_000
SECRET = "s" * 40
OTHER_SECRET = "o" * 40
API_KEY = "backend-key-0123456789"
OTHER_API_KEY = "other-backend-key-0123"
JWKS_URL = "https://idp.example.com/.well-known/jwks.json"


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RELAY_"):
            monkeypatch.delenv(name)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


class JwksServer:
    """A fake JWKS endpoint that counts its requests."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.requests = 0
        self.fail = False

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await asyncio.sleep(0)
        if self.fail:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"keys": self.keys})


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def server(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> JwksServer:
    rsa_jwk = {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "rsa-1"}
    ec_jwk = {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "ec-1"}
    return JwksServer([{**rsa_jwk, "use": "sig", "alg": "RS256"}, ec_jwk])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def http(server: JwksServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handler)) as client:
        yield client


AuthFactory = Callable[..., Authenticator]


@pytest.fixture
def make_auth(http: httpx.AsyncClient, clock: Clock) -> AuthFactory:
    def make(**overrides: Any) -> Authenticator:
        values: dict[str, Any] = {"jwt_secret": SECRET, "api_keys": f"{API_KEY},{OTHER_API_KEY}"}
        values.update(overrides)
        return Authenticator(Settings(**values), http=http, clock=clock)

    return make


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "iat": NOW, "nbf": NOW, "exp": NOW + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_built(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), "sha256").digest()
    return f"{signing_input}.{b64(signature)}"


async def refused(auth: Authenticator, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        await auth.authenticate(authorization=f"Bearer {token}")
    return caught.value


# --- valid tokens --------------------------------------------------------------------------


async def test_valid_hs256_token_is_a_user(make_auth: AuthFactory) -> None:
    principal = await make_auth().authenticate(authorization=f"Bearer {hs256(name='Alice')}")
    assert principal.kind is PrincipalKind.USER
    assert principal.id == "alice"
    assert principal.claims["name"] == "Alice"


async def test_scheme_is_case_insensitive_and_query_token_works(make_auth: AuthFactory) -> None:
    auth = make_auth()
    assert (await auth.authenticate(authorization=f"bEaReR  {hs256()}")).id == "alice"
    assert (await auth.authenticate(authorization=None, token=hs256())).id == "alice"


async def test_valid_rs256_and_es256_via_jwks(
    make_auth: AuthFactory,
    server: JwksServer,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    auth = make_auth(jwt_secret=None, jwks_url=JWKS_URL)
    rs = jwt.encode(claims(sub="rs"), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(claims(sub="es"), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert (await auth.verify_jwt(rs)).id == "rs"
    assert (await auth.verify_jwt(es)).id == "es"
    assert server.requests == 1


# --- times ---------------------------------------------------------------------------------


async def test_expired_token_is_refused(make_auth: AuthFactory) -> None:
    exc = await refused(make_auth(), hs256(iat=NOW - 700, nbf=NOW - 700, exp=NOW - 100))
    assert "expired" in exc.detail


async def test_not_yet_valid_token_is_refused(make_auth: AuthFactory) -> None:
    exc = await refused(make_auth(), hs256(nbf=NOW + 100))
    assert "not yet valid" in exc.detail
    exc = await refused(make_auth(), hs256(iat=NOW + 100))
    assert "future" in exc.detail


async def test_times_within_leeway_are_accepted(make_auth: AuthFactory, clock: Clock) -> None:
    auth = make_auth(jwt_leeway_seconds=10)
    assert (await auth.verify_jwt(hs256(iat=NOW - 600, nbf=NOW - 600, exp=NOW - 5))).is_user
    assert (await auth.verify_jwt(hs256(iat=NOW + 5, nbf=NOW + 5))).is_user
    clock.now += 11  # the same token, now past the leeway
    with pytest.raises(InvalidToken, match="expired"):
        await auth.verify_jwt(hs256(iat=NOW - 600, nbf=NOW - 600, exp=NOW))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "soon", True])
async def test_non_numeric_exp_is_refused(make_auth: AuthFactory, value: object) -> None:
    assert "exp" in (await refused(make_auth(), hs256(exp=value))).detail


async def test_lifetime_over_the_maximum_is_refused(make_auth: AuthFactory) -> None:
    auth = make_auth(jwt_max_ttl_seconds=3600)
    assert (await auth.verify_jwt(hs256(exp=NOW + 3600))).is_user
    assert "lifetime" in (await refused(auth, hs256(exp=NOW + 3601))).detail
    # Without iat the lifetime is counted from now.
    assert "lifetime" in (await refused(auth, hs256(iat=None, exp=NOW + 4000))).detail


# --- issuer, audience, subject -------------------------------------------------------------


async def test_audience_is_checked_when_configured(make_auth: AuthFactory) -> None:
    auth = make_auth(jwt_audience="relay")
    assert (await auth.verify_jwt(hs256(aud="relay"))).is_user
    assert (await auth.verify_jwt(hs256(aud=["other", "relay"]))).is_user
    assert "wrong audience" in (await refused(auth, hs256(aud="other"))).detail
    assert "aud" in (await refused(auth, hs256())).detail


async def test_audience_is_accepted_when_not_configured(make_auth: AuthFactory) -> None:
    assert (await make_auth().verify_jwt(hs256(aud="anything"))).is_user


async def test_issuer_is_checked_when_configured(make_auth: AuthFactory) -> None:
    auth = make_auth(jwt_issuer="https://idp.example.com/")
    assert (await auth.verify_jwt(hs256(iss="https://idp.example.com/"))).is_user
    assert "wrong issuer" in (await refused(auth, hs256(iss="https://evil.example/"))).detail
    assert "iss" in (await refused(auth, hs256())).detail


@pytest.mark.parametrize(("sub", "reason"), [(None, "missing sub"), ("", "sub"), (42, "sub")])
async def test_missing_or_bad_sub_is_refused(
    make_auth: AuthFactory, sub: object, reason: str
) -> None:
    assert reason in (await refused(make_auth(), hs256(sub=sub))).detail


async def test_subject_length_limit(make_auth: AuthFactory) -> None:
    assert (await make_auth().verify_jwt(hs256(sub="u" * 200))).id == "u" * 200
    assert "sub" in (await refused(make_auth(), hs256(sub="u" * 201))).detail


@pytest.mark.parametrize(
    "sub", ["auth0|123", "google-oauth2|1234", "a@b.c", "https://idp.example/u/7", "zoë 東京"]
)
async def test_subjects_of_real_identity_providers_sign_in(
    make_auth: AuthFactory, sub: str
) -> None:
    assert (await make_auth().verify_jwt(hs256(sub=sub))).id == sub


@pytest.mark.parametrize(
    "sub", ["alice\n", "a\rb", "\x00", "a\tb", "a\x7f", "a\x85", "a\u2028b", "a\ud800"]
)
async def test_subjects_no_user_route_could_address_are_refused(
    make_auth: AuthFactory, sub: str
) -> None:
    # The user routes refuse these ids (validate_user_id); sign-in must not accept them.
    assert (await refused(make_auth(), hs256(sub=sub))).detail == "invalid sub claim"


async def test_missing_exp_is_refused(make_auth: AuthFactory) -> None:
    assert "missing exp" in (await refused(make_auth(), hs256(exp=None))).detail


# --- signatures and algorithms -------------------------------------------------------------


async def test_bad_signature_is_refused(make_auth: AuthFactory) -> None:
    assert "bad signature" in (await refused(make_auth(), hs256(OTHER_SECRET))).detail


async def test_tampered_payload_is_refused(make_auth: AuthFactory) -> None:
    header, _, signature = hs256().split(".")
    forged = b64(json.dumps(claims(sub="admin")).encode())
    assert "bad signature" in (await refused(make_auth(), f"{header}.{forged}.{signature}")).detail


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_is_refused(make_auth: AuthFactory, alg: str) -> None:
    token = hand_built({"alg": alg, "typ": "JWT"}, claims(), key=None)
    assert token.endswith(".")
    assert "unsupported algorithm" in (await refused(make_auth(), token)).detail


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS512", "PS256", "EdDSA", ["HS256"], None])
async def test_other_algorithms_are_refused(make_auth: AuthFactory, alg: object) -> None:
    token = hand_built({"alg": alg}, claims(), key=SECRET.encode())
    assert "unsupported algorithm" in (await refused(make_auth(), token)).detail


@pytest.mark.parametrize("secret", [SECRET, None])
async def test_hs256_signed_with_the_rsa_public_key_is_refused(
    make_auth: AuthFactory, rsa_key: rsa.RSAPrivateKey, secret: str | None
) -> None:
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hand_built({"alg": "HS256", "kid": "rsa-1"}, claims(), key=pem)
    exc = await refused(make_auth(jwt_secret=secret, jwks_url=JWKS_URL), token)
    assert exc.detail == ("bad signature" if secret else "unsupported algorithm")


async def test_rs256_is_refused_when_only_a_secret_is_configured(
    make_auth: AuthFactory, rsa_key: rsa.RSAPrivateKey, server: JwksServer
) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    assert "unsupported algorithm" in (await refused(make_auth(), token)).detail
    assert server.requests == 0


async def test_header_alg_must_match_the_jwks_key_type(
    make_auth: AuthFactory, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    auth = make_auth(jwks_url=JWKS_URL)
    rs_on_ec_kid = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "ec-1"})
    es_on_rsa_kid = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "rsa-1"})
    assert "does not match" in (await refused(auth, rs_on_ec_kid)).detail
    assert "does not match" in (await refused(auth, es_on_rsa_kid)).detail


async def test_unknown_kid_refreshes_once_per_minute(
    make_auth: AuthFactory, rsa_key: rsa.RSAPrivateKey, server: JwksServer, clock: Clock
) -> None:
    auth = make_auth(jwks_url=JWKS_URL)
    await auth.verify_jwt(jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "rsa-1"}))
    assert server.requests == 1
    for kid, expected_requests in (("k2", 2), ("k3", 2)):
        token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": kid})
        assert "unknown key id" in (await refused(auth, token)).detail
        assert server.requests == expected_requests
    clock.now += 60
    await refused(auth, jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "k4"}))
    assert server.requests == 3


async def test_unreachable_jwks_is_provider_unavailable(
    make_auth: AuthFactory, rsa_key: rsa.RSAPrivateKey, server: JwksServer
) -> None:
    server.fail = True
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(ProviderUnavailable) as caught:
        await make_auth(jwks_url=JWKS_URL).authenticate(authorization=f"Bearer {token}")
    assert "idp.example.com" in caught.value.detail


async def test_over_long_token_is_refused_before_parsing(make_auth: AuthFactory) -> None:
    token = hs256(padding="x" * 9000)
    assert "too long" in (await refused(make_auth(), token)).detail
    with pytest.raises(InvalidToken, match="too long"):
        await make_auth().verify_jwt(token)


async def test_garbage_in_jwt_shape_is_malformed(make_auth: AuthFactory) -> None:
    assert "malformed" in (await refused(make_auth(), "aaaa.bbbb.cccc")).detail


# --- API keys and credential handling ------------------------------------------------------


async def test_api_key_in_either_header_is_a_backend(make_auth: AuthFactory) -> None:
    auth = make_auth()
    expected_id = "key:" + hashlib.sha256(OTHER_API_KEY.encode()).hexdigest()[:8]
    by_header = await auth.authenticate(authorization=None, api_key=OTHER_API_KEY)
    by_bearer = await auth.authenticate(authorization=f"Bearer {OTHER_API_KEY}")
    assert by_header == by_bearer
    assert by_header.kind is PrincipalKind.BACKEND
    assert by_header.id == expected_id
    assert dict(by_header.claims) == {}


async def test_wrong_api_key_is_refused(make_auth: AuthFactory) -> None:
    auth = make_auth()
    with pytest.raises(InvalidToken, match="invalid API key"):
        await auth.authenticate(authorization=None, api_key=API_KEY + "x")
    with pytest.raises(InvalidToken, match="invalid API key"):
        await auth.authenticate(authorization=f"Bearer {API_KEY[:-1]}")


def test_api_key_is_compared_against_every_key(
    make_auth: AuthFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(len(a))
        return original(a, b)

    monkeypatch.setattr("core.identity.hmac.compare_digest", counting)
    make_auth().verify_api_key(API_KEY)  # matches the first of two keys
    assert calls == [32, 32]  # no early exit, and digests (not keys) are compared


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearer   ", "", "bearer"]
)
async def test_non_bearer_or_empty_authorization_is_refused(
    make_auth: AuthFactory, authorization: str
) -> None:
    with pytest.raises(InvalidToken):
        await make_auth().authenticate(authorization=authorization)


async def test_empty_query_token_or_api_key_is_refused_not_anonymous(
    make_auth: AuthFactory,
) -> None:
    with pytest.raises(InvalidToken, match="empty credential"):
        await make_auth().authenticate(authorization=None, token="")
    with pytest.raises(InvalidToken, match="invalid API key"):
        await make_auth().authenticate(authorization=None, api_key="")


async def test_token_without_kid_needs_a_single_key_jwks(
    make_auth: AuthFactory, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert "missing key id" in (await refused(make_auth(jwks_url=JWKS_URL), token)).detail


async def test_no_credential_is_anonymous(make_auth: AuthFactory) -> None:
    assert await make_auth().authenticate(authorization=None) is ANONYMOUS


async def test_two_credentials_are_refused(make_auth: AuthFactory) -> None:
    with pytest.raises(InvalidToken, match="more than one"):
        await make_auth().authenticate(authorization=f"Bearer {hs256()}", api_key=API_KEY)


async def test_details_and_logs_never_carry_the_token_or_secret(
    make_auth: AuthFactory, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = make_auth(jwks_url=JWKS_URL)
    bad = [
        hs256(OTHER_SECRET),
        hs256(exp=NOW - 100),
        hs256(sub=""),
        hand_built({"alg": "none"}, claims(), key=None),
        jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "nope"}),
        SECRET,  # a secret sent as if it were an API key
    ]
    for token in bad:
        exc = await refused(auth, token)
        rendered = f"{exc} {exc.detail} {exc.problem()} {exc!r} {caplog.text}"
        assert exc.detail
        assert SECRET not in rendered
        for segment in token.split("."):
            assert not segment or segment not in rendered


async def test_aclose_closes_only_its_own_client(http: httpx.AsyncClient) -> None:
    settings = Settings(jwt_secret=SECRET, jwks_url=JWKS_URL)
    injected = Authenticator(settings, http=http)
    await injected.aclose()
    assert not http.is_closed
    unused = Authenticator(settings)
    await unused.aclose()
    assert unused._http is None  # nothing is created before the first token needs it
    owned = Authenticator(settings, clock=lambda: NOW)
    assert (await owned.verify_jwt(hs256())).id == "alice"
    await owned.aclose()
    assert owned._http is not None
    assert owned._http.is_closed


async def test_api_key_is_refused_in_the_query_string(make_auth: AuthFactory) -> None:
    # A query string lands in proxy logs; only short-lived user tokens may travel there.
    with pytest.raises(InvalidToken, match="query string") as caught:
        await make_auth().authenticate(authorization=None, token=API_KEY)
    assert API_KEY not in str(caught.value)
    principal = await make_auth().authenticate(authorization=f"Bearer {API_KEY}")
    assert principal.is_backend


async def test_a_remembered_token_still_expires(make_auth: AuthFactory, clock: Clock) -> None:
    # The signature of a token seen before is not checked again; its times always are.
    auth = make_auth()
    token = hs256()
    assert (await auth.verify_jwt(token)).id == "alice"
    assert (await auth.verify_jwt(token)).id == "alice"
    clock.now = NOW + 600 + 11  # past exp and the 10 s leeway
    with pytest.raises(InvalidToken, match="expired"):
        await auth.verify_jwt(token)
