"""Issue 12, finding 2: a client cannot choose the address its rate limits are counted against.

One test per deployment shape: a bare `relay serve` (no proxy: the header is ignored), behind one
proxy (the address that proxy appended), behind a chain of configured proxies (the right-most
address that is not one of them), and on Lambda (API Gateway's `sourceIp`, never a header).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from mangum import Mangum
from starlette.requests import Request

from app.clientaddr import ClientAddress, lambda_source_ip, parse_address
from app.main import create_app
from app.relay import Relay
from core.settings import Settings
from core.tokens import mint_dev_token
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from collections.abc import Iterator

VICTIM = "198.51.100.7"
ATTACKER = "203.0.113.66"
WRONG_KEY = {"X-API-Key": "not-the-api-key-0123456789"}
# Each refused credential costs the caller's address a token; one token per 100 s is no refill.
LIMITS = {"rate_auth_burst": 20, "rate_auth_per_second": 0.01, "rate_ip_multiplier": 1.0}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RELAY_"):
            monkeypatch.delenv(name)


def _app(**overrides: Any) -> Any:
    return create_app(relay=Relay.build(Settings(**{**UNIT_SETTINGS, **LIMITS, **overrides})))


def _client(app: Any, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://relay")


def _bearer(user_id: str) -> dict[str, str]:
    token = mint_dev_token(Settings(**UNIT_SETTINGS), user_id=user_id)
    return {"Authorization": f"Bearer {token}"}


async def _bad_credentials(http: httpx.AsyncClient, count: int, **headers: str) -> list[int]:
    statuses = []
    for n in range(count):
        forwarded = {"X-Forwarded-For": headers["xff"].format(n=n)} if "xff" in headers else {}
        response = await http.post(
            "/v1/events",
            json={"name": "n", "channel": "news", "data": 1},
            headers={**WRONG_KEY, **forwarded},
        )
        statuses.append(response.status_code)
    return statuses


async def test_without_a_proxy_a_rotating_forwarded_for_does_not_escape_the_limit() -> None:
    # Observed: from loopback, a rotating X-Forwarded-For got none of 300 guesses refused.
    async with _client(_app(), "127.0.0.1") as http:
        statuses = await _bad_credentials(http, 40, xff="10.{n}.0.1")
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}


async def test_behind_one_proxy_the_client_written_hops_are_not_believed() -> None:
    # Observed: `X-Forwarded-For: <victim>, <attacker>` drained the victim's bucket.
    app = _app(trust_proxy_headers=True)
    async with _client(app, "10.0.0.2") as proxy:
        attacker = await _bad_credentials(proxy, 30, xff=f"{VICTIM}, {ATTACKER}")
        assert set(attacker[20:]) == {429}  # the attacker's own address pays
        victim = [
            await proxy.post(
                "/auth/channel",
                data={"socket_id": "1.2", "channel_name": "private-user-v"},
                headers={**_bearer("v"), "X-Forwarded-For": VICTIM},
            )
            for _ in range(15)
        ]
    assert [r.status_code for r in victim] == [200] * 15


async def test_behind_configured_proxies_the_right_most_untrusted_hop_is_the_client() -> None:
    app = _app(trusted_proxies="10.0.0.0/8, 192.168.0.0/16")
    async with _client(app, "10.0.0.2") as proxy:
        # The client claims VICTIM; the edge proxy (192.168.1.1) appended what it saw.
        attacker = await _bad_credentials(proxy, 25, xff=f"{VICTIM}, {ATTACKER}, 192.168.1.1")
        assert set(attacker[20:]) == {429}
        victim = await proxy.post(
            "/auth/channel",
            data={"socket_id": "1.2", "channel_name": "private-user-v"},
            headers={**_bearer("v"), "X-Forwarded-For": f"{VICTIM}, 192.168.1.1"},
        )
    assert victim.status_code == 200, victim.text
    # A peer outside the configured proxies is taken as it is, whatever it writes.
    async with _client(app, ATTACKER) as direct:
        statuses = await _bad_credentials(direct, 5, xff="10.{n}.9.9")
    assert statuses == [429] * 5  # ATTACKER's bucket is already empty


def _v2_event(source_ip: str, forwarded: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/v1/events",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-api-key": WRONG_KEY["X-API-Key"],
            "x-forwarded-for": forwarded,
            "host": "relay.example.com",
        },
        "requestContext": {
            "http": {"method": "POST", "path": "/v1/events", "sourceIp": source_ip},
            "stage": "$default",
        },
        "body": '{"name":"n","channel":"news","data":1}',
        "isBase64Encoded": False,
    }


CONTEXT: Any = None  # the relay reads nothing from the Lambda context


@pytest.fixture
def event_loop_for_mangum() -> Iterator[None]:
    # Mangum runs each invocation on the current loop; it is closed here, not leaked.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        loop.close()
        asyncio.set_event_loop(None)


@pytest.mark.usefixtures("event_loop_for_mangum")
def test_on_lambda_the_source_ip_counts_never_the_header() -> None:
    # Even with the proxy setting on: API Gateway, not a header, says who connected.
    handler = Mangum(_app(trust_proxy_headers=True), lifespan="off")
    statuses = [
        handler(_v2_event(ATTACKER, f"10.{n}.0.1"), CONTEXT)["statusCode"] for n in range(25)
    ]
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}
    # Another source address has its own bucket.
    assert handler(_v2_event(VICTIM, ATTACKER), CONTEXT)["statusCode"] == 401


def test_lambda_source_ip_for_each_event_shape() -> None:
    v1 = {"requestContext": {"identity": {"sourceIp": "192.0.2.1"}}, "headers": {}}
    v2 = {"requestContext": {"http": {"sourceIp": "2001:db8::1"}}}
    alb = {
        "requestContext": {"elb": {"targetGroupArn": "arn"}},
        "headers": {"x-forwarded-for": f"{VICTIM}, {ATTACKER}"},
    }
    edge = {"Records": [{"cf": {"request": {"clientIp": "192.0.2.9"}}}]}
    assert lambda_source_ip(v1) == "192.0.2.1"
    assert lambda_source_ip(v2) == "2001:db8::1"
    assert lambda_source_ip(alb) == ATTACKER  # the ALB appends what it saw
    assert lambda_source_ip(edge) == "192.0.2.9"
    assert lambda_source_ip({}) is None


def _request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", f.encode()) for f in forwarded]
    return Request({"type": "http", "headers": headers, "client": (peer, 1)})


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ((), "10.0.0.2"),
        (("garbage",), "10.0.0.2"),  # nothing usable: the proxy itself
        ((f"{VICTIM}, {ATTACKER}",), ATTACKER),
        ((VICTIM, ATTACKER), ATTACKER),  # two header lines read as one list, in order
        ((f"{ATTACKER}, 10.1.1.1, 10.2.2.2",), ATTACKER),
        (("x, 10.1.1.1",), "10.1.1.1"),  # every hop trusted, then garbage: the last trusted
        ((f"{VICTIM}, ::ffff:{ATTACKER}",), ATTACKER),  # one address, one bucket
        ((f"{VICTIM}, [2001:db8::5]:443",), "2001:db8::5"),
    ],
)
def test_the_forwarded_for_walk(forwarded: tuple[str, ...], expected: str) -> None:
    from ipaddress import ip_network

    addresses = ClientAddress(trust_proxy_headers=False, trusted_proxies=[ip_network("10.0.0.0/8")])
    assert addresses.of(_request("10.0.0.2", *forwarded)) == expected


def test_an_untrusted_peer_is_taken_as_it_is() -> None:
    addresses = ClientAddress(trust_proxy_headers=True)
    assert addresses.of(_request("192.0.2.1", ATTACKER)) == ATTACKER  # one-hop: peer trusted
    assert ClientAddress(trust_proxy_headers=False).of(_request("192.0.2.1", ATTACKER)) == (
        "192.0.2.1"
    )


def test_remembered_peers_answer_as_parsed_and_stay_bounded() -> None:
    # Each peer is parsed once (bench/README.md, "Auth"); the answers do not change.
    from app.clientaddr import MAX_REMEMBERED_PEERS

    addresses = ClientAddress(trust_proxy_headers=False)
    peers = ["::ffff:192.0.2.1", "2001:DB8::0001", "unix-socket", "192.0.2.1"]
    for _ in range(2):
        assert [addresses.of(_request(p)) for p in peers] == [
            "192.0.2.1",
            "2001:db8::1",
            "unix-socket",
            "192.0.2.1",
        ]
    for n in range(MAX_REMEMBERED_PEERS + 10):
        assert addresses.of(_request(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")) is not None
    assert len(addresses._peers) <= MAX_REMEMBERED_PEERS


def test_parse_address_bounds_and_canonical_form() -> None:
    assert parse_address("x" * 100) is None
    assert str(parse_address(" 2001:DB8::0001 ")) == "2001:db8::1"
    assert str(parse_address("203.0.113.9:8080")) == "203.0.113.9"


def test_a_bad_trusted_proxy_setting_is_named() -> None:
    with pytest.raises(ValueError, match="not an address or CIDR"):
        Settings(**{**UNIT_SETTINGS, "trusted_proxies": "10.0.0.0/8, proxy.internal"})
