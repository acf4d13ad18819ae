"""Rate limits: token buckets per caller and per client IP, per policy rule, and their 429s."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any, TypeAlias

import httpx
import pytest
from starlette.requests import Request

from app.main import create_app
from app.relay import Relay
from core.errors import ConfigurationError, RateLimited
from core.policy import Policy
from core.principal import ANONYMOUS, user
from core.ratelimit import Rate, RateLimiter, rule_rates
from core.settings import Settings
from core.stores.base import Bucket
from core.stores.memory import MemoryStore
from core.tokens import mint_dev_token
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from fastapi import FastAPI

    from tests.unit.conftest import Recorder

PROBLEM = "urn:realtime-relay:problem:rate-limited"
SLOW = 0.25  # tokens per second: a refused request waits 4 s for one token

POLICY = """
[[rule]]
pattern = "limited-{name}"
subscribe = ["anyone"]
publish = ["backend"]
options = { rate_limit = { publish = { per_second = 0.25, burst = 2 } } }

[[rule]]
pattern = "private-room-{name}"
subscribe = ["user"]
publish = ["backend"]
options = { rate_limit = { auth = { per_second = 0.25, burst = 1 } } }

[[rule]]
pattern = "private-user-{id}"
subscribe = ["user:{id}"]
publish = ["backend"]

[[rule]]
pattern = "private-{name}"
subscribe = ["user"]
publish = ["backend"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
publish = ["backend"]
"""

OTHER_KEY = "second-ratelimit-api-key-0123"


def settings(**overrides: Any) -> Settings:
    """Unit settings with these changes (call after `relay_settings` cleared RELAY_*)."""
    values: dict[str, Any] = {
        **UNIT_SETTINGS,
        "api_keys": f"{UNIT_SETTINGS['api_keys']},{OTHER_KEY}",
        **overrides,
    }
    return Settings(**values)


class RelayClient(httpx.AsyncClient):
    """An in-process client that knows the app it calls."""

    app: FastAPI


Opener: TypeAlias = "Callable[..., contextlib.AbstractAsyncContextManager[RelayClient]]"


@pytest.fixture
def client(relay_settings: Settings) -> Opener:
    """`async with client(ip="10.0.0.1", **settings) as http:` an app with these settings
    (`relay_settings` cleared the RELAY_* environment first); `app=` calls an existing app."""

    @contextlib.asynccontextmanager
    async def open_client(
        ip: str = "10.0.0.1", *, app: FastAPI | None = None, **overrides: Any
    ) -> AsyncIterator[RelayClient]:
        if app is None:
            relay = Relay.build(
                settings(**overrides), policy=Policy.from_toml(POLICY, source="test.toml")
            )
            app = create_app(relay=relay)
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        async with RelayClient(transport=transport, base_url="http://relay") as http:
            http.app = app
            yield http

    return open_client


def bearer(user_id: str) -> dict[str, str]:
    token = mint_dev_token(settings(), user_id=user_id)
    return {"Authorization": f"Bearer {token}"}


def backend(key: str = str(UNIT_SETTINGS["api_keys"])) -> dict[str, str]:
    return {"X-API-Key": key}


async def auth_channel(
    http: httpx.AsyncClient, channel: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    return await http.post(
        "/auth/channel",
        data={"socket_id": "1234.5678", "channel_name": channel},
        headers={**(headers or {}), **extra},
    )


async def publish(
    http: httpx.AsyncClient, channels: list[str], key: str | None = None, **extra: Any
) -> httpx.Response:
    return await http.post(
        "/v1/events",
        json={"name": "tick", "channels": channels, "data": "x"},
        headers={**backend(key or str(UNIT_SETTINGS["api_keys"])), **extra},
    )


def assert_limited(response: httpx.Response, retry_after: int | None = None) -> int:
    """A 429 problem with a Retry-After header matching the body; returns the seconds."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == PROBLEM
    assert body["status"] == 429
    seconds = int(response.headers["retry-after"])
    assert seconds >= 1
    assert body["retry_after"] == seconds
    if retry_after is not None:
        assert seconds == retry_after
    return seconds


# --- /auth/channel ---------------------------------------------------------------------------


async def test_auth_is_limited_per_caller_with_a_429_and_retry_after(client: Opener) -> None:
    async with client(rate_auth_burst=3, rate_auth_per_second=SLOW) as http:
        for _ in range(3):
            ok = await auth_channel(http, "private-user-alice", bearer("alice"))
            assert ok.status_code == 200, ok.text
        refused = await auth_channel(http, "private-user-alice", bearer("alice"))
        assert_limited(refused, retry_after=math.ceil(1 / SLOW))
        assert "auth" not in refused.json()
        # Another user (same IP, whose bucket is 5 times larger) is not held back.
        other = await auth_channel(http, "private-user-bob", bearer("bob"))
        assert other.status_code == 200, other.text


async def test_auth_is_limited_per_ip_with_the_multiplier(client: Opener) -> None:
    overrides = {"rate_auth_burst": 2, "rate_auth_per_second": SLOW, "rate_ip_multiplier": 2}
    async with client("10.0.0.1", **overrides) as office:
        app = office.app
        for name in ("alice", "bob"):  # 2 users x 2 requests fill the IP's bucket of 2 x 2
            for _ in range(2):
                ok = await auth_channel(office, f"private-user-{name}", bearer(name))
                assert ok.status_code == 200, ok.text
        # Carol has her own full bucket, but the office's IP is spent.
        assert_limited(await auth_channel(office, "private-user-carol", bearer("carol")))
        async with client("10.0.0.2", app=app) as home:
            ok = await auth_channel(home, "private-user-carol", bearer("carol"))
            assert ok.status_code == 200, ok.text


async def test_an_anonymous_caller_counts_once_against_its_ip(client: Opener) -> None:
    # An anonymous caller is its address: one bucket, the IP's (burst 4 x 1.5 = 6), once each.
    overrides = {"rate_auth_burst": 4, "rate_auth_per_second": SLOW, "rate_ip_multiplier": 1.5}
    async with client(**overrides) as http:
        statuses = [(await auth_channel(http, "private-x")).status_code for _ in range(7)]
    # Anonymous: the policy says 401 (a login would help) after the limiter let it through.
    assert statuses == [401] * 6 + [429]


async def test_auth_user_is_limited(client: Opener) -> None:
    async with client(rate_auth_burst=1, rate_auth_per_second=SLOW) as http:
        data = {"socket_id": "1234.5678"}
        first = await http.post("/auth/user", data=data, headers=bearer("alice"))
        assert first.status_code == 200, first.text
        assert_limited(await http.post("/auth/user", data=data, headers=bearer("alice")))


async def test_auth_token_is_limited(client: Opener) -> None:
    async with client(rate_auth_burst=1, rate_auth_per_second=SLOW) as http:
        first = await http.get("/auth/token", headers=bearer("alice"))
        assert first.status_code != 429  # the local provider issues no tokens: 501
        assert_limited(await http.get("/auth/token", headers=bearer("alice")))


# --- /v1/events and /v1/batch ------------------------------------------------------------------


async def test_publish_is_limited_and_refused_events_are_not_delivered(client: Opener) -> None:
    async with client(rate_publish_burst=2, rate_publish_per_second=SLOW) as http:
        relay: Relay = http.app.state.relay
        recorder = _listen(relay, "news")
        for _ in range(2):
            assert (await publish(http, ["news"])).status_code == 200
        assert_limited(await publish(http, ["news"]), retry_after=math.ceil(1 / SLOW))
        assert len(recorder.deliveries) == 2
        # The other API key has its own bucket.
        assert (await publish(http, ["news"], key=OTHER_KEY)).status_code == 200


async def test_the_cost_of_a_publish_is_its_number_of_messages(client: Opener) -> None:
    async with client(rate_publish_burst=5, rate_publish_per_second=SLOW) as http:
        relay: Relay = http.app.state.relay
        recorder = _listen(relay, "a", "b", "c")
        assert (await publish(http, ["a", "b", "c"])).status_code == 200  # 3 of 5
        assert_limited(await publish(http, ["a", "b", "c"]))  # 3 > 2 left: nothing taken
        assert len(recorder.deliveries) == 3
        assert (await publish(http, ["a", "b"])).status_code == 200  # the 2 left
        batch = {"batch": [{"name": "e", "channel": "a", "data": "x"}]}
        assert_limited(await http.post("/v1/batch", json=batch, headers=backend()))
        assert len(recorder.deliveries) == 5


async def test_a_batch_costs_one_token_per_event(client: Opener) -> None:
    async with client(rate_publish_burst=3, rate_publish_per_second=SLOW) as http:
        items = [{"name": "e", "channel": f"c{i}", "data": "x"} for i in range(3)]
        ok = await http.post("/v1/batch", json={"batch": items}, headers=backend())
        assert ok.status_code == 200, ok.text
        one = await http.post("/v1/batch", json={"batch": items[:1]}, headers=backend())
        assert_limited(one)


async def test_a_publish_larger_than_the_burst_is_refused_and_takes_nothing(client: Opener) -> None:
    # No wait would ever let it through: a 400 says so, where a 429 would invite endless retries.
    async with client(rate_publish_burst=2, rate_publish_per_second=SLOW) as http:
        refused = await publish(http, ["a", "b", "c"])
        assert refused.status_code == 400
        assert refused.json()["type"] == "urn:realtime-relay:problem:too-many-items"
        assert refused.json()["limit"] == 2
        assert (await publish(http, ["a", "b"])).status_code == 200


async def test_limits_can_be_turned_off(client: Opener) -> None:
    overrides = {"rate_limits": False, "rate_auth_burst": 1, "rate_publish_burst": 1}
    async with client(**overrides) as http:
        for _ in range(5):
            assert (await auth_channel(http, "private-user-al", bearer("al"))).status_code == 200
            assert (await publish(http, ["news"])).status_code == 200


# --- per policy rule ---------------------------------------------------------------------------


async def test_a_rule_limits_publishing_on_its_channels_per_caller(client: Opener) -> None:
    async with client() as http:  # global limits: the defaults, far away
        for channel in ("limited-a", "limited-b"):  # one bucket per rule, not per channel
            assert (await publish(http, [channel])).status_code == 200
        assert_limited(await publish(http, ["limited-c"]), retry_after=math.ceil(1 / SLOW))
        assert (await publish(http, ["news"])).status_code == 200  # other rules: no limit
        assert (await publish(http, ["limited-a"], key=OTHER_KEY)).status_code == 200


async def test_a_rule_counts_only_the_messages_on_its_channels(client: Opener) -> None:
    async with client() as http:
        response = await publish(http, ["limited-a", "news", "sports"])
        assert response.status_code == 200, response.text


async def test_a_rule_limits_subscriptions_on_its_channels(client: Opener) -> None:
    async with client() as http:
        ok = await auth_channel(http, "private-room-1", bearer("alice"))
        assert ok.status_code == 200, ok.text
        assert_limited(await auth_channel(http, "private-room-2", bearer("alice")))
        other_rule = await auth_channel(http, "private-user-alice", bearer("alice"))
        assert other_rule.status_code == 200
        assert (await auth_channel(http, "private-room-1", bearer("bob"))).status_code == 200


def test_rule_rates_read_from_the_policy() -> None:
    policy = Policy.from_toml(POLICY, source="test.toml")
    assert rule_rates(policy.rules[0], policy.source) == {"publish": Rate(0.25, 2.0)}
    assert rule_rates(policy.rules[1], policy.source) == {"auth": Rate(0.25, 1.0)}
    assert rule_rates(policy.rules[4], policy.source) == {}


def test_the_burst_defaults_to_the_rate() -> None:
    text = _rule_policy("{ publish = { per_second = 3 } }")
    policy = Policy.from_toml(text, source="p.toml")
    assert rule_rates(policy.rules[0], "p.toml") == {"publish": Rate(3.0, 3.0)}


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ("5", "must be a table"),
        ("{ subscribe = { per_second = 1 } }", "unknown kind 'subscribe'"),
        ("{ publish = 5 }", "publish needs positive per_second"),
        ("{ publish = { burst = 5 } }", "publish needs positive per_second"),
        ("{ publish = { per_second = 0 } }", "publish needs positive per_second"),
        ("{ publish = { per_second = -1, burst = 5 } }", "publish needs positive per_second"),
        ("{ auth = { per_second = 1, burst = 0 } }", "auth needs positive per_second"),
        ("{ publish = { per_second = true } }", "publish needs positive per_second"),
        ('{ publish = { per_second = "5" } }', "publish needs positive per_second"),
    ],
)
def test_bad_rule_limits_stop_start_up_naming_the_rule(
    relay_settings: Settings, table: str, complaint: str
) -> None:
    policy = Policy.from_toml(_rule_policy(table), source="policy.toml")
    with pytest.raises(ConfigurationError) as raised:
        Relay.build(relay_settings, policy=policy)
    detail = raised.value.detail
    assert detail.startswith("policy.toml: rule #1 (limited-{name}) options.rate_limit"), detail
    assert complaint in detail


def _rule_policy(table: str) -> str:
    return (
        '[[rule]]\npattern = "limited-{name}"\npublish = ["backend"]\n'
        f"options = {{ rate_limit = {table} }}\n"
    )


# --- the limiter itself, and the client IP -----------------------------------------------------


async def test_the_limiter_takes_from_every_bucket(relay_settings: Settings) -> None:
    store = MemoryStore(clock=lambda: 0.0)
    limits = settings(rate_publish_burst=4, rate_publish_per_second=1, rate_ip_multiplier=1.5)
    limiter = RateLimiter(limits, store, Policy.default())
    await limiter.check("publish", user("ann"), "192.0.2.1", cost=4)
    # The IP's bucket (4 x 1.5 = 6) has 2 left: Ben, with 4 of his own, gets exactly 2.
    await limiter.check("publish", user("ben"), "192.0.2.1", cost=2)
    with pytest.raises(RateLimited) as raised:
        await limiter.check("publish", user("ben"), "192.0.2.1")
    assert raised.value.retry_after == 1
    # From another IP Ben has tokens of his own left; with no IP known (a Lambda event without
    # one) only the caller's bucket counts; auth and publish are separate.
    await limiter.check("publish", user("ben"), "192.0.2.2")
    await limiter.check("publish", user("cy"), None, cost=4)
    await limiter.check("auth", user("ann"), "192.0.2.1")


async def test_a_refused_request_takes_from_no_bucket(relay_settings: Settings) -> None:
    store = MemoryStore(clock=lambda: 0.0)
    limits = settings(rate_publish_burst=4, rate_publish_per_second=1, rate_ip_multiplier=1.5)
    limiter = RateLimiter(limits, store, Policy.default())
    await limiter.check("publish", user("ann"), "192.0.2.1", cost=4)
    for _ in range(2):  # Ann retries while refused
        with pytest.raises(RateLimited):
            await limiter.check("publish", user("ann"), "192.0.2.1")
    await limiter.check("publish", user("ben"), "192.0.2.1", cost=2)  # the IP's 2 left


class CountingStore(MemoryStore):
    """A memory store that records each call the limiter makes of it."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: 0.0)
        self.calls: list[list[Bucket]] = []

    async def take_all(self, buckets: Sequence[Bucket]) -> float:
        self.calls.append(list(buckets))
        return await super().take_all(buckets)


async def test_every_bucket_of_a_request_is_taken_in_one_store_call(
    relay_settings: Settings,
) -> None:
    store = CountingStore()
    limits = settings(rate_publish_burst=4, rate_publish_per_second=1, rate_ip_multiplier=1.5)
    policy = Policy.from_toml(POLICY, source="test.toml")
    limiter = RateLimiter(limits, store, policy)
    rule = policy.rule_for("limited-a")
    assert rule is not None
    await limiter.check("publish", user("ann"), "192.0.2.1", cost=3, rules=[(rule, 2)])
    # One call (one Redis round trip) for the caller's, the IP's and the rule's buckets, in
    # that order: the first that lacks tokens names the wait.
    assert store.calls == [
        [
            Bucket("publish:user:ann", 1, 4, 3),
            Bucket("publish:ip:192.0.2.1", 1.5, 6, 3),
            Bucket(f"publish:rule{rule.index}:user:ann", 0.25, 2, 2),
        ]
    ]
    with pytest.raises(RateLimited) as raised:  # the caller's bucket has 1 left, the rule's 0
        await limiter.check("publish", user("ann"), "192.0.2.1", cost=1, rules=[(rule, 1)])
    assert raised.value.retry_after == 4  # the rule's wait (1 token at 0.25/s)
    await limiter.check("publish", user("ann"), "192.0.2.1")  # nothing was taken by the refusal
    assert len(store.calls) == 3


async def test_a_disabled_limiter_never_refuses(relay_settings: Settings) -> None:
    limiter = RateLimiter(
        settings(rate_limits=False, rate_auth_burst=1), MemoryStore(), Policy.default()
    )
    for _ in range(10):
        await limiter.check("auth", ANONYMOUS, "192.0.2.9", cost=5)


def _request(peer: str, forwarded: str | None) -> Request:
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    return Request({"type": "http", "headers": headers, "client": (peer, 1234)})


@pytest.mark.parametrize(
    ("trust", "forwarded", "expected"),
    [
        (False, "203.0.113.7", "10.1.1.1"),
        (True, "203.0.113.7", "203.0.113.7"),
        # One trusted hop (the peer): the address it appended, not what the client wrote.
        (True, "203.0.113.7, 10.0.0.2", "10.0.0.2"),
        (True, " , 10.0.0.2", "10.0.0.2"),
        (True, None, "10.1.1.1"),
        (True, "x" * 100, "10.1.1.1"),  # not an address: the peer, never an unbounded key
    ],
)
def test_client_ip(
    relay_settings: Settings, trust: bool, forwarded: str | None, expected: str
) -> None:
    relay = Relay.build(settings(trust_proxy_headers=trust))
    assert relay.client_ip(_request("10.1.1.1", forwarded)) == expected


@pytest.mark.parametrize("trust", [False, True])
async def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(
    client: Opener, trust: bool
) -> None:
    overrides = {
        "rate_auth_burst": 1,
        "rate_auth_per_second": SLOW,
        "rate_ip_multiplier": 1,
        "trust_proxy_headers": trust,
    }
    async with client("10.9.9.9", **overrides) as proxy:
        first = await auth_channel(
            proxy, "private-user-ann", bearer("ann"), **{"X-Forwarded-For": "203.0.113.1"}
        )
        assert first.status_code == 200, first.text
        second = await auth_channel(
            proxy, "private-user-ben", bearer("ben"), **{"X-Forwarded-For": "203.0.113.2"}
        )
    if trust:  # two clients behind the proxy, one token each
        assert second.status_code == 200, second.text
    else:  # the header is the client's claim: both count against the proxy's address
        assert_limited(second)


def _listen(relay: Relay, *channels: str) -> Recorder:
    from providers.local.provider import LocalProvider
    from tests.unit.conftest import Recorder

    provider = relay.provider
    assert isinstance(provider, LocalProvider)
    recorder = Recorder("9999.1")
    for channel in channels:
        provider.hub.subscribe(recorder, channel)
    return recorder


async def test_refused_credentials_are_throttled_per_ip(client: Opener) -> None:
    # Guessing API keys or forging tokens costs the guesser's IP its auth tokens.
    overrides = {"rate_auth_burst": 2, "rate_auth_per_second": SLOW, "rate_ip_multiplier": 1.0}
    async with client(**overrides) as http:
        wrong = {"X-API-Key": "not-the-key-0123456789"}
        statuses = [(await publish(http, ["news"], **wrong)).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        # The right key from the same IP is throttled too while the guessing goes on.
        assert (await auth_channel(http, "private-user-al", bearer("al"))).status_code == 429
