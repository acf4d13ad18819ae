"""The JWKS cache: which keys it keeps, when it fetches, and how it fails."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from core.errors import ProviderUnavailable
from core.jwks import MAX_RESPONSE_BYTES, JwksCache, key_algorithm, parse_jwk

JWKS_URL = "https://idp.example.com/tenant-7/.well-known/jwks.json"
T0 = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class JwksServer:
    """A fake JWKS endpoint that counts its requests."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.requests = 0
        self.fail = False
        self.delay = 0.0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"keys": self.keys})


def rsa_jwk(kid: str | None, key: rsa.RSAPrivateKey, **extra: Any) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    return {**jwk, **extra}


def ec_jwk(kid: str | None, key: ec.EllipticCurvePrivateKey, **extra: Any) -> dict[str, Any]:
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    return {**jwk, **extra}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_cache(
    server: JwksServer, clock: Clock, url: str = JWKS_URL
) -> tuple[JwksCache, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server.handler))
    return JwksCache(url, http, clock=clock), http


# --- which keys are kept -------------------------------------------------------------------


def test_parse_keeps_rsa_and_ec_p256(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    rsa_parsed = parse_jwk(rsa_jwk("r", rsa_key, use="sig", alg="RS256"))
    ec_parsed = parse_jwk(ec_jwk("e", ec_key, alg="ES256"))
    assert rsa_parsed is not None
    assert ec_parsed is not None
    assert rsa_parsed[0] == "r"
    assert key_algorithm(rsa_parsed[1]) == "RS256"
    assert key_algorithm(ec_parsed[1]) == "ES256"


@pytest.mark.parametrize(
    "change",
    [
        {"use": "enc"},
        {"alg": "RS512"},
        {"alg": "ES256"},  # kty RSA with an EC algorithm: a mismatched key is not bound to either
        {"alg": "HS256"},
        {"key_ops": ["encrypt"]},
        {"kid": 7},
    ],
)
def test_parse_refuses_unusable_rsa_keys(
    rsa_key: rsa.RSAPrivateKey, change: dict[str, Any]
) -> None:
    assert parse_jwk({**rsa_jwk("r", rsa_key), **change}) is None


def test_parse_refuses_other_curves_private_keys_weak_rsa_and_junk(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    private = RSAAlgorithm.to_jwk(rsa_key, as_dict=True)
    assert parse_jwk(ec_jwk("p384", p384)) is None
    assert parse_jwk(ec_jwk("e", ec_key, alg="RS256")) is None
    assert parse_jwk(rsa_jwk("weak", weak)) is None
    assert "d" in private
    assert parse_jwk(private) is None
    assert parse_jwk({"kty": "oct", "k": "c2VjcmV0"}) is None
    assert parse_jwk({"kty": "RSA", "n": "!!", "e": "AQAB"}) is None
    assert parse_jwk("not a jwk") is None


# --- loading and lookup --------------------------------------------------------------------


async def test_loads_lazily_and_finds_keys_by_kid(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, clock: Clock
) -> None:
    server = JwksServer([rsa_jwk("r", rsa_key), ec_jwk("e", ec_key)])
    cache, http = make_cache(server, clock)
    async with http:
        assert server.requests == 0
        found = await cache.get_key("r")
        assert found is not None
        assert found.public_numbers() == rsa_key.public_key().public_numbers()
        assert await cache.get_key("e") is not None
    assert server.requests == 1


async def test_key_without_kid_is_used_only_when_it_is_the_only_key(
    rsa_key: rsa.RSAPrivateKey, rsa_key2: rsa.RSAPrivateKey, clock: Clock
) -> None:
    single, http1 = make_cache(JwksServer([rsa_jwk(None, rsa_key)]), clock)
    double, http2 = make_cache(JwksServer([rsa_jwk(None, rsa_key), rsa_jwk("b", rsa_key2)]), clock)
    async with http1, http2:
        assert await single.get_key(None) is not None
        assert await double.get_key(None) is None
        assert await double.get_key("b") is not None


async def test_unknown_kid_refreshes_at_most_once_per_interval(
    rsa_key: rsa.RSAPrivateKey, rsa_key2: rsa.RSAPrivateKey, clock: Clock
) -> None:
    server = JwksServer([rsa_jwk("old", rsa_key)])
    cache, http = make_cache(server, clock)
    async with http:
        assert await cache.get_key("old") is not None
        assert server.requests == 1

        assert await cache.get_key("unknown-1") is None
        assert server.requests == 2  # the first unknown kid refreshes

        clock.now += 30
        assert await cache.get_key("unknown-2") is None
        assert server.requests == 2  # within 60 s: no second fetch

        server.keys = [rsa_jwk("old", rsa_key), rsa_jwk("new", rsa_key2)]
        clock.now += 31
        assert await cache.get_key("new") is not None
        assert server.requests == 3  # 61 s later the rotation is picked up


async def test_unknown_kid_on_first_load_does_not_fetch_twice(
    rsa_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    server = JwksServer([rsa_jwk("r", rsa_key)])
    cache, http = make_cache(server, clock)
    async with http:
        assert await cache.get_key("nope") is None
    assert server.requests == 1


async def test_concurrent_unknown_kids_fetch_once(
    rsa_key: rsa.RSAPrivateKey, rsa_key2: rsa.RSAPrivateKey, clock: Clock
) -> None:
    server = JwksServer([rsa_jwk("old", rsa_key)])
    cache, http = make_cache(server, clock)
    async with http:
        await cache.get_key("old")
        server.keys = [rsa_jwk("old", rsa_key), rsa_jwk("new", rsa_key2)]
        server.delay = 0.05
        found = await asyncio.gather(*(cache.get_key("new") for _ in range(20)))
    assert all(key is not None for key in found)  # the waiters saw the refreshed set too
    assert server.requests == 2


async def test_concurrent_first_loads_fetch_once(rsa_key: rsa.RSAPrivateKey, clock: Clock) -> None:
    server = JwksServer([rsa_jwk("r", rsa_key)])
    server.delay = 0.05
    cache, http = make_cache(server, clock)
    async with http:
        found = await asyncio.gather(*(cache.get_key("r") for _ in range(20)))
    assert all(key is not None for key in found)
    assert server.requests == 1


async def test_keys_are_reloaded_after_max_age(rsa_key: rsa.RSAPrivateKey, clock: Clock) -> None:
    server = JwksServer([rsa_jwk("r", rsa_key)])
    cache, http = make_cache(server, clock)
    async with http:
        await cache.get_key("r")
        server.keys = []  # the provider withdrew the key
        clock.now += 3601
        assert await cache.get_key("r") is None
    assert server.requests == 2


# --- failures ------------------------------------------------------------------------------


async def test_unreachable_endpoint_raises_provider_unavailable_naming_host_only(
    clock: Clock,
) -> None:
    server = JwksServer([])
    server.fail = True
    cache, http = make_cache(server, clock, url=JWKS_URL + "?secret=s3cr3t")
    async with http:
        with pytest.raises(ProviderUnavailable) as caught:
            await cache.get_key("r")
    assert "idp.example.com" in caught.value.detail
    assert "tenant-7" not in caught.value.detail
    assert "s3cr3t" not in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.status == 503


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, json={"keys": []}),
        httpx.Response(200, content=b"<html>not json</html>"),
        httpx.Response(200, json=["not", "a", "set"]),
        httpx.Response(200, json={"keys": "nope"}),
        httpx.Response(200, content=b'{"keys": [], "pad": "' + b"x" * MAX_RESPONSE_BYTES + b'"}'),
        httpx.Response(301, headers={"location": "https://evil.example/jwks"}),
    ],
)
async def test_bad_responses_are_fetch_failures(response: httpx.Response, clock: Clock) -> None:
    requests = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        return response

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    cache = JwksCache(JWKS_URL, http, clock=clock)
    async with http:
        with pytest.raises(ProviderUnavailable):
            await cache.get_key("r")
    assert requests == 1  # in particular, the redirect was not followed


async def test_streamed_oversized_body_is_cut_off(clock: Clock) -> None:
    async def chunks() -> Any:
        yield json.dumps({"keys": []}).encode()[:-1]
        for _ in range(100):
            yield b" " * 4096

    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, content=chunks()))
    )
    cache = JwksCache(JWKS_URL, http, clock=clock)
    async with http:
        with pytest.raises(ProviderUnavailable):
            await cache.get_key("r")


async def test_cached_keys_answer_when_the_endpoint_fails(
    rsa_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    server = JwksServer([rsa_jwk("r", rsa_key)])
    cache, http = make_cache(server, clock)
    async with http:
        await cache.get_key("r")
        server.fail = True
        clock.now += 3601  # stale: a reload is tried, fails, and the cached key still answers
        assert await cache.get_key("r") is not None
        assert server.requests == 2
        clock.now += 61
        # An unknown kid cannot be answered from the cache while the provider is down.
        with pytest.raises(ProviderUnavailable):
            await cache.get_key("rotated")
        assert server.requests == 3


async def test_failed_first_load_is_retried_on_next_use(
    rsa_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    server = JwksServer([rsa_jwk("r", rsa_key)])
    server.fail = True
    cache, http = make_cache(server, clock)
    async with http:
        with pytest.raises(ProviderUnavailable):
            await cache.get_key("r")
        server.fail = False
        assert await cache.get_key("r") is not None
    assert server.requests == 2
