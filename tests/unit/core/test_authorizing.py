"""The authorizing service: one place, one order (identity, rate limit, policy, validation) for
channel auth, SSE, channel queries and user routes; queries behind the circuit breaker; a
publish matching each channel against the policy once."""

from __future__ import annotations

import base64
import contextlib
from collections import Counter
from importlib import resources
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from msgspec import structs

from app.main import create_app
from app.relay import Relay
from core.errors import (
    BadRequest,
    EncryptedChannelHistory,
    InvalidChannel,
    ProviderUnavailable,
    RateLimited,
    TooManyItems,
    Unauthenticated,
)
from core.policy import Policy
from core.policy.rules import Rule
from core.principal import ANONYMOUS, Principal, PrincipalKind, user
from core.provider import PresenceData
from core.settings import Settings
from core.stores.memory import MemoryStore
from core.tokens import mint_dev_token
from providers.local.provider import LocalProvider
from tests.unit.conftest import UNIT_SETTINGS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from core.authorizing import Authorizer
    from core.policy import Match
    from core.provider import Member, Message, Occupancy
    from core.stores.base import LogPage

PROBLEM = "urn:realtime-relay:problem:"
API_KEY = str(UNIT_SETTINGS["api_keys"])
SLOW = 0.25  # tokens per second: a refused request waits 4 s for one

# The built-in policy, behind a rule with its own rate limit and one with an event schema.
POLICY = """
[[rule]]
pattern = "private-room-{name}"
subscribe = ["user"]
options = { rate_limit = { auth = { per_second = 0.25, burst = 1 } } }

[[rule]]
pattern = "typed-{name}"
publish = ["backend"]
options = { schemas = { "order" = { type = "object", required = ["id"] } } }
""" + resources.files("core.policy").joinpath("default.toml").read_text(encoding="utf-8")


def settings(**overrides: Any) -> Settings:
    """Unit settings (call after `relay_settings` cleared RELAY_*); one bucket per address."""
    return Settings(**{**UNIT_SETTINGS, "rate_ip_multiplier": 1.0, **overrides})


def bearer(user_id: str, name: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_dev_token(settings(), user_id=user_id, name=name)}"}


def backend() -> dict[str, str]:
    return {"X-API-Key": API_KEY}


@contextlib.asynccontextmanager
async def client(
    *, provider: LocalProvider | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    relay = Relay.build(
        settings(**overrides),
        provider=provider,
        policy=Policy.from_toml(POLICY, source="test.toml"),
    )
    transport = httpx.ASGITransport(app=create_app(relay=relay), client=("10.0.0.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
        yield http


def authorizer(**overrides: Any) -> Authorizer:
    relay = Relay.build(settings(**overrides), policy=Policy.from_toml(POLICY, source="t.toml"))
    return relay.authorizer


def assert_problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == PROBLEM + slug


def assert_limited(response: httpx.Response) -> None:
    assert_problem(response, 429, "rate-limited")
    assert int(response.headers["retry-after"]) >= 1


async def auth_channel(
    http: httpx.AsyncClient, channel: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    data = {"socket_id": "1234.5678", "channel_name": channel}
    return await http.post("/auth/channel", data=data, headers=headers or {})


# --- the entry point for socket sessions ---------------------------------------------------------


async def test_a_subscription_grant_names_the_presence_member(
    relay_settings: Settings,
) -> None:
    service = authorizer()
    alice = user("alice", name="Alice")
    grant = await service.authorize_subscription(alice, "presence-lobby", client_ip="10.0.0.1")
    assert grant.channel == "presence-lobby"
    assert grant.presence == PresenceData("alice", {"name": "Alice"})
    plain = await service.authorize_subscription(alice, "private-room-1")
    assert plain.presence is None


async def test_a_subscription_is_refused_with_the_gates_errors(relay_settings: Settings) -> None:
    service = authorizer(rate_auth_burst=2, rate_auth_per_second=SLOW)
    with pytest.raises(InvalidChannel):
        await service.authorize_subscription(ANONYMOUS, "no spaces", client_ip="10.0.0.1")
    with pytest.raises(Unauthenticated):
        await service.authorize_subscription(ANONYMOUS, "private-room-1", client_ip="10.0.0.1")
    await service.authorize_subscription(ANONYMOUS, "news", client_ip="10.0.0.1")
    with pytest.raises(RateLimited):  # the limiter before the policy: 429, not a grant
        await service.authorize_subscription(ANONYMOUS, "news", client_ip="10.0.0.1")


# --- the order of the gates ----------------------------------------------------------------------


async def test_a_rate_limited_caller_gets_429_before_the_policys_403(
    relay_settings: Settings,
) -> None:
    async with client(rate_auth_burst=1, rate_auth_per_second=SLOW) as http:
        bob = bearer("bob")
        assert_problem(await auth_channel(http, "private-user-alice", bob), 403, "forbidden")
        assert_limited(await auth_channel(http, "private-user-alice", bob))


async def test_a_rate_limited_anonymous_caller_gets_429_before_the_policys_401(
    relay_settings: Settings,
) -> None:
    async with client(rate_auth_burst=1, rate_auth_per_second=SLOW) as http:
        assert_problem(await auth_channel(http, "private-room-1"), 401, "unauthenticated")
        assert_limited(await auth_channel(http, "private-room-1"))


async def test_a_bad_token_is_401_before_the_limiter_counts_the_channel(
    relay_settings: Settings,
) -> None:
    # private-room-{name} allows one subscription per caller; a refused token takes none of it.
    async with client() as http:
        forged = {"Authorization": "Bearer " + mint_dev_token(settings(), user_id="x")[:-4]}
        for _ in range(3):
            assert_problem(await auth_channel(http, "private-room-1", forged), 401, "invalid-token")
        ok = await auth_channel(http, "private-room-1", bearer("alice"))
        assert ok.status_code == 200, ok.text


async def test_the_policy_refuses_before_validation_reads_the_presence_member(
    relay_settings: Settings,
) -> None:
    # An anonymous caller is refused by the policy (401), never told about the member's data.
    async with client() as http:
        assert_problem(await auth_channel(http, "presence-lobby"), 401, "unauthenticated")
        too_big = bearer("alice", name="x" * 2000)
        response = await auth_channel(http, "presence-lobby", too_big)
        assert_problem(response, 413, "payload-too-large")


# --- rate limits on every flow -------------------------------------------------------------------


async def test_sse_is_rate_limited(relay_settings: Settings) -> None:
    async with client(rate_auth_burst=2, rate_auth_per_second=SLOW) as http:
        params = {"channel": "private-user-alice"}
        for _ in range(2):  # refused by the policy, but counted
            assert_problem(await http.get("/v1/stream", params=params), 401, "unauthenticated")
        assert_limited(await http.get("/v1/stream", params=params))


async def test_a_stream_of_many_channels_is_one_request(relay_settings: Settings) -> None:
    async with client(rate_auth_burst=2, rate_auth_per_second=SLOW) as http:
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("channel", f"private-user-alice-{n}") for n in range(30)
        ]
        response = await http.get("/v1/stream", params=params)
        assert_problem(response, 401, "unauthenticated")  # not 400 too-many-items


@pytest.mark.parametrize(
    "path", ["/v1/channels/news", "/v1/channels/news/messages", "/v1/channels/presence-a/members"]
)
async def test_channel_queries_are_rate_limited(relay_settings: Settings, path: str) -> None:
    async with client(rate_auth_burst=2, rate_auth_per_second=SLOW) as http:
        caller = bearer("alice")
        for _ in range(2):
            response = await http.get(path, headers=caller)
            assert response.status_code == 200, response.text
        assert_limited(await http.get(path, headers=caller))


async def test_a_backends_queries_count_against_its_publish_rate(relay_settings: Settings) -> None:
    async with client(
        rate_auth_burst=1, rate_publish_burst=3, rate_publish_per_second=SLOW
    ) as http:
        for _ in range(3):
            assert (await http.get("/v1/channels/news", headers=backend())).status_code == 200
        assert_limited(await http.get("/v1/channels/news", headers=backend()))
        publish = {"name": "e", "channel": "news", "data": "x"}
        assert_limited(await http.post("/v1/events", json=publish, headers=backend()))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/users/alice/events", {"name": "hello", "data": "x"}),
        ("/v1/users/alice/terminate", None),
    ],
)
async def test_user_routes_are_rate_limited(
    relay_settings: Settings, path: str, body: dict[str, str] | None
) -> None:
    async with client(rate_publish_burst=1, rate_publish_per_second=SLOW) as http:
        first = await http.post(path, json=body, headers=backend())
        assert first.status_code == 200, first.text
        assert_limited(await http.post(path, json=body, headers=backend()))


async def test_user_routes_refuse_other_callers_before_counting(relay_settings: Settings) -> None:
    async with client(rate_publish_burst=1, rate_publish_per_second=SLOW) as http:
        body = {"name": "hello", "data": "x"}
        for _ in range(3):
            response = await http.post("/v1/users/al/events", json=body, headers=bearer("al"))
            assert_problem(response, 403, "forbidden")
        ok = await http.post("/v1/users/al/events", json=body, headers=backend())
        assert ok.status_code == 200, ok.text


# --- channel queries behind the circuit breaker --------------------------------------------------


class DownProvider(LocalProvider):
    """A local provider whose channel queries fail as a provider that is down does."""

    calls = 0

    async def _down(self) -> Any:
        self.calls += 1
        raise ProviderUnavailable("down")

    async def occupancy(self, channel: str) -> Occupancy:
        return await self._down()  # type: ignore[no-any-return]

    async def members(self, channel: str) -> list[Member]:
        return await self._down()  # type: ignore[no-any-return]

    async def history(self, channel: str, *, limit: int) -> list[Message]:
        return await self._down()  # type: ignore[no-any-return]


# typed-x: its rule grants no history, so its messages come from the provider, behind the breaker
# (news's come from the relay's own store, core/history.py).
@pytest.mark.parametrize(
    "path",
    ["/v1/channels/news", "/v1/channels/typed-x/messages", "/v1/channels/presence-a/members"],
)
async def test_channel_queries_go_through_the_circuit_breaker(
    relay_settings: Settings, path: str
) -> None:
    provider = DownProvider(settings())
    async with client(provider=provider, breaker_failures=2, breaker_cooldown_seconds=60) as http:
        for _ in range(2):
            assert_problem(await http.get(path, headers=backend()), 503, "provider-unavailable")
        assert provider.calls == 2
        refused = await http.get(path, headers=backend())
        assert_problem(refused, 503, "provider-unavailable")
        assert int(refused.headers["retry-after"]) >= 1
        assert provider.calls == 2  # the breaker is open: the provider was not called
        # One breaker per provider: publishing is refused alike.
        publish = {"name": "e", "channel": "news", "data": "x"}
        response = await http.post("/v1/events", json=publish, headers=backend())
        assert_problem(response, 503, "provider-unavailable")


# --- one policy match per channel ----------------------------------------------------------------


@pytest.fixture
def matches(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Policy.match and Rule.match calls by channel: `policy:<channel>`, `rule:<channel>`."""
    counts: Counter[str] = Counter()
    policy_match = Policy.match
    rule_match = Rule.match

    def count_policy(self: Policy, channel: str) -> Match | None:
        counts[f"policy:{channel}"] += 1
        return policy_match(self, channel)

    def count_rule(self: Rule, channel: str) -> dict[str, str] | None:
        counts[f"rule:{channel}"] += 1
        return rule_match(self, channel)

    monkeypatch.setattr(Policy, "match", count_policy)
    monkeypatch.setattr(Rule, "match", count_rule)
    return counts


def _rules_walked(channel: str) -> int:
    """How many rules one walk of POLICY tries before `channel`'s matches."""
    policy = Policy.from_toml(POLICY, source="t.toml")
    return next(n for n, r in enumerate(policy.rules, 1) if r.compiled.match(channel) is not None)


async def test_a_publish_matches_each_channel_once(
    relay_settings: Settings, matches: Counter[str]
) -> None:
    async with client() as http:
        batch = {
            "batch": [
                {"name": "order", "channel": "typed-a", "data": {"id": 1}},
                {"name": "order", "channel": "typed-a", "data": {"id": 2}},
                {"name": "e", "channel": "news", "data": "x"},
                {"name": "e", "channel": "typed-a", "data": "x"},
            ]
        }
        matches.clear()
        response = await http.post("/v1/batch", json=batch, headers=backend())
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 4
    assert matches == {
        "policy:typed-a": 1,
        "policy:news": 1,
        "rule:typed-a": _rules_walked("typed-a"),
        "rule:news": _rules_walked("news"),
    }


async def test_a_publish_still_checks_every_event_against_its_schema(
    relay_settings: Settings,
) -> None:
    async with client() as http:
        batch = {
            "batch": [
                {"name": "order", "channel": "typed-a", "data": {"id": 1}},
                {"name": "order", "channel": "typed-a", "data": {"no": 2}},
            ]
        }
        response = await http.post("/v1/batch", json=batch, headers=backend())
        assert_problem(response, 400, "invalid-payload")


async def test_channel_auth_matches_its_channel_once(
    relay_settings: Settings, matches: Counter[str]
) -> None:
    async with client() as http:
        matches.clear()
        ok = await auth_channel(http, "private-room-1", bearer("alice"))
        assert ok.status_code == 200, ok.text
    assert matches == {"policy:private-room-1": 1, "rule:private-room-1": 1}


async def test_stream_channels_beyond_the_limit_are_refused_before_the_gates(
    relay_settings: Settings,
) -> None:
    service = authorizer(max_subscriptions_per_connection=2)
    with pytest.raises(TooManyItems):
        await service.authorize_stream(ANONYMOUS, ["a", "b", "c"], client_ip="10.0.0.1")


def test_every_route_calls_the_service() -> None:
    """No route decides on its own: the routes' modules import no gate."""
    import app.local.routes
    import app.routes.auth
    import app.routes.channels
    import app.routes.users

    for module in (app.routes.auth, app.routes.channels, app.routes.users, app.local.routes):
        names = vars(module)
        for gate in ("require", "allowed", "Action", "validate_channel", "encode_user_info"):
            assert gate not in names, f"{module.__name__} imports {gate}"


# --- signing in ---------------------------------------------------------------------------------


async def test_user_auth_carries_the_tokens_watchlist_claim(relay_settings: Settings) -> None:
    service = authorizer()
    ann = user("ann", name="Ann", watchlist=["bob", 7, "bob"])
    answer = await service.authenticate_user(ann, socket_id="1.2", client_ip=None)
    assert orjson.loads(answer["user_data"]) == {
        "id": "ann",
        "user_info": {"name": "Ann"},
        "watchlist": ["bob", "7"],
    }
    plain = await service.authenticate_user(user("bob"), socket_id="1.2", client_ip=None)
    assert "watchlist" not in orjson.loads(plain["user_data"])


@pytest.mark.parametrize(
    "watchlist", ["bob", [True], [""], [{"id": "bob"}], [str(i) for i in range(101)]]
)
async def test_a_malformed_watchlist_claim_is_refused(
    relay_settings: Settings, watchlist: object
) -> None:
    with pytest.raises(BadRequest, match="watchlist claim"):
        await authorizer().authenticate_user(
            user("ann", watchlist=watchlist), socket_id="1.2", client_ip=None
        )


# --- history: encrypted channels are refused by the service itself -------------------------------

BACKEND = Principal(PrincipalKind.BACKEND, "test")
ENCRYPTED_HISTORY_POLICY = """
[[rule]]
pattern = "private-encrypted-{x}"
subscribe = ["anyone"]
history = ["anyone"]
"""


class CountingStore(MemoryStore):
    """A memory store that counts the calls made to it after `counting` is set."""

    counting = False
    calls = 0

    async def take(self, key: str, *, rate: float, burst: float, cost: float = 1.0) -> float:
        self.calls += self.counting
        return await super().take(key, rate=rate, burst=burst, cost=cost)

    async def log_read(self, name: str, *, after: int | None, limit: int) -> LogPage:
        self.calls += self.counting
        return await super().log_read(name, after=after, limit=limit)


class KeepingProvider(LocalProvider):
    """A provider that keeps its own history (as Ably does), counting the reads of it."""

    calls = 0

    async def history(self, channel: str, *, limit: int) -> list[Message]:
        self.calls += 1
        return []


@pytest.mark.parametrize("keeps_history", [False, True], ids=["relay-store", "provider"])
@pytest.mark.parametrize("since", [None, "0badf00d:1"])
async def test_the_history_of_an_encrypted_channel_is_refused_before_any_store_or_provider_call(
    relay_settings: Settings, keeps_history: bool, since: str | None
) -> None:
    channel = "private-encrypted-a"
    overrides: dict[str, Any] = {
        "encryption_master_key_base64": base64.b64encode(bytes(32)).decode()
    }
    provider = KeepingProvider(settings(**overrides))
    provider.limits = structs.replace(provider.limits, keeps_history=keeps_history)
    store = CountingStore()
    # A record as a release before the refusal could have left behind: it must not be read.
    epoch, _ = await store.log_reserve(channel, 1, epoch="0badf00d", ttl=60)
    await store.log_append(channel, epoch, [(1, b'[0, "e", "\\"x\\"", true]')], ttl=60, keep=5)
    relay = Relay.build(
        settings(**overrides),
        provider=provider,
        policy=Policy.from_toml(ENCRYPTED_HISTORY_POLICY, source="t.toml"),
        store=store,
    )
    store.counting = True
    for principal in (ANONYMOUS, BACKEND):
        with pytest.raises(EncryptedChannelHistory) as caught:
            await relay.authorizer.history(
                principal, channel, limit=10, since=since, client_ip="10.0.0.1"
            )
        assert caught.value.problem()["type"] == PROBLEM + "encrypted-channel-history"
        assert caught.value.status == 501
    assert (store.calls, provider.calls) == (0, 0)
    # Its neighbours are read as before (the rule grants history).
    page = await relay.authorizer.history(
        BACKEND, "private-a", limit=10, since=None, client_ip="10.0.0.1"
    )
    assert page.messages == []
    assert store.calls + provider.calls > 0  # the counters count


async def test_the_history_route_answers_an_encrypted_channel_with_its_problem(
    relay_settings: Settings,
) -> None:
    overrides: dict[str, Any] = {
        "encryption_master_key_base64": base64.b64encode(bytes(32)).decode()
    }
    async with client(**overrides) as http:
        for query in ("", "?since=0badf00d:1"):
            response = await http.get(
                f"/v1/channels/private-encrypted-a/messages{query}", headers=backend()
            )
            assert_problem(response, 501, "encrypted-channel-history")
            assert response.json()["channel"] == "private-encrypted-a"
