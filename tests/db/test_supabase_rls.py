"""The compiled RLS policies, applied to a real PostgreSQL, grant exactly what the relay decides.

Each caller holds the claims of the JWT the relay minted for it (decoded from the token
`/auth/token` would answer) or, anonymous, those of the project's anon key. For every (caller,
topic) the four Realtime checks, may receive and may send, broadcast and presence, are compared
with `Policy.decide`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from core.policy import Action, Allow, Deny, Policy
from core.policy.senders import without_subscriber
from core.principal import ANONYMOUS, Principal, user
from providers.supabase.provider import SupabaseProvider
from providers.supabase.rls import MIGRATION_SUFFIX, compile_policy
from providers.supabase.settings import SupabaseSettings
from tests.db.conftest import Verdicts

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tests.db.conftest import RlsProbe

SECRET = "db-test-supabase-jwt-secret-0123456789abcdef"
ANON_KEY_CLAIMS = {"iss": "supabase", "ref": "local", "role": "anon", "iat": 1, "exp": 2**31}
MIGRATIONS = Path(__file__).resolve().parents[2] / "infra" / "supabase" / "migrations"
UUID_USER = "0b5f3c2e-8d7a-4e1b-9c3d-2f6a7b8c9d0e"

CUSTOM = """
hook = "tests.db.test_supabase_rls:hook"

[[rule]]
pattern = "private-locked-{x}"
subscribe = []

[[rule]]
pattern = "presence-team-{team}-room-{room}"
subscribe = ["claim:teams={team}", "user:{room}"]
client_events = ["claim:teams={team}"]

[[rule]]
pattern = "private-org-{org}-{rest}"
subscribe = ["claim:org={org}"]
client_events = ["user:owner-{rest}"]

[[rule]]
pattern = "private-level-{n}"
subscribe = ["claim:level={n}"]

[[rule]]
pattern = "private-vip"
subscribe = ["user:alice", "claim:tier=gold"]
client_events = ["user:alice"]

[[rule]]
pattern = "private-room{a}x{b}"
subscribe = ["user:{a}"]
client_events = ["user:{b}"]

[[rule]]
pattern = "private-hooked-{x}"
subscribe = ["hook", "user:{x}"]
client_events = ["hook"]

[[rule]]
pattern = "feed.{x}"
subscribe = ["anyone"]
client_events = ["user"]

[[rule]]
pattern = "private-{name}"
subscribe = ["user"]
client_events = ["claim:it's=y"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
client_events = ["anyone"]
"""

HOOK_ALLOWS = False


def hook(principal: Principal, action: Action, channel: str, params: Mapping[str, str]) -> Any:
    """The custom policy's hook: denies, unless a test flips HOOK_ALLOWS."""
    if HOOK_ALLOWS:
        return Allow("hook", "the test hook allows")
    return Deny("the test hook denies")


DEFAULT_CALLERS = (
    ANONYMOUS,
    user("alice", name="Alice"),
    user("bob"),
    user(UUID_USER),
    user("a.b@c,d;e=f_g"),
)
DEFAULT_TOPICS = (
    "news",
    "news.sports",
    "PRIVATE-x",
    "realtime",
    "private-user-alice",
    "private-user-bob",
    f"private-user-{UUID_USER}",
    "private-user-alice-2",
    "private-user-ALICE",
    "private-user-",
    "private-user-a.b@c,d;e=f_g",
    "private-encrypted-x",
    "private-chat",
    "private-x-y-z",
    "private-",
    "presence-room",
    "presence-a-b",
    "presence-",
    "",
    "news\n",
    "private-user-alice\n",
    "ñews",
    "a b",
    "private-user-alice'--",
)
CUSTOM_CALLERS = (
    ANONYMOUS,
    user("alice", teams=["red", 7, True], org="acme", level=3, tier="gold", **{"it's": "y"}),
    user("bob", teams="blue", org=5, level=True, tier=["gold"], **{"it's": ["y", 1]}),
    user("carol", teams=[], org=None, level="3", tier={"gold": 1}),
    user(UUID_USER, teams=["7"], level=3.0, **{"it's": "Y"}),
    user("owner-a-b", org=["acme"], teams=[{"red": 1}, "True"]),
)
CUSTOM_TOPICS = (
    "private-locked-a",
    "presence-team-red-room-alice",
    "presence-team-7-room-x",
    "presence-team-blue-room-bob",
    "presence-team-True-room-z",
    "presence-team-red-room-a-b",
    "presence-team-red-room-carol",
    "private-org-acme-a-b",
    "private-org-5-x",
    "private-org-acme",
    "private-level-3",
    "private-level-True",
    "private-level-3.0",
    "private-vip",
    "private-roomaxbxc",
    "private-roomalicexbob",
    "private-roomcarolxowner-a-b",
    "private-hooked-alice",
    "private-hooked-bob",
    "feed.a",
    "feedXa",
    "feed.a-b",
    "private-x",
    "presence-x",
    "presence-",
    "news",
    "private-vip\n",
    "feed.a b",
)


def _allowed(policy: Policy, who: Principal, action: Action, topic: str) -> bool:
    return not isinstance(policy.decide(who, action, topic), Deny)


def relay_verdicts(policy: Policy, who: Principal, topic: str) -> Verdicts:
    """What the relay decides, in the four Realtime checks (see providers.supabase.rls)."""
    subscribe = _allowed(policy, who, Action.SUBSCRIBE, topic)
    presence = topic.startswith("presence-")
    # Supabase grants no client writes through `subscriber` (core/policy/senders.py).
    client_events = _allowed(without_subscriber(policy), who, Action.CLIENT_EVENT, topic)
    return Verdicts(subscribe, subscribe and presence, client_events, subscribe and presence)


async def caller(policy: Policy, who: Principal) -> tuple[str, dict[str, Any]]:
    """The Postgres role and JWT claims Realtime would check this caller with."""
    if not who.is_user:
        return "anon", ANON_KEY_CLAIMS
    settings = SupabaseSettings(
        url="http://127.0.0.1:9", service_role_key="unused-service-key", jwt_secret=SECRET
    )
    answer = await SupabaseProvider(settings).issue_token(who, policy)
    claims: dict[str, Any] = jwt.decode(
        answer["access_token"], SECRET, algorithms=["HS256"], audience="authenticated"
    )
    return str(claims["role"]), claims


async def compare(
    rls: RlsProbe, policy: Policy, callers: tuple[Principal, ...], topics: tuple[str, ...]
) -> list[tuple[str, str, Verdicts]]:
    """Every (caller, topic) whose RLS verdicts differ from the relay's; also the allow count."""
    mismatches = []
    for who in callers:
        role, claims = await caller(policy, who)
        for topic in topics:
            expected = relay_verdicts(policy, who, topic)
            found = rls.check(role, claims, topic)
            if found != expected:
                mismatches.append((who.describe(), topic, found))
    return mismatches


def _allow_count(policy: Policy, callers: tuple[Principal, ...], topics: tuple[str, ...]) -> int:
    return sum(
        sum(vars_ for vars_ in _as_tuple(relay_verdicts(policy, who, topic)))
        for who in callers
        for topic in topics
    )


def _as_tuple(v: Verdicts) -> tuple[bool, bool, bool, bool]:
    return (v.receive_broadcast, v.receive_presence, v.send_broadcast, v.send_presence)


def _committed_migration() -> str:
    found = sorted(MIGRATIONS.glob("*" + MIGRATION_SUFFIX))
    assert found, f"no *{MIGRATION_SUFFIX} in {MIGRATIONS}"
    return found[-1].read_text(encoding="utf-8")


@pytest.mark.parametrize("source", ["committed", "compiled"])
async def test_default_policy_migration_grants_what_the_relay_decides(
    rls: RlsProbe, source: str
) -> None:
    policy = Policy.default()
    rls.apply(_committed_migration() if source == "committed" else compile_policy(policy).sql)
    assert await compare(rls, policy, DEFAULT_CALLERS, DEFAULT_TOPICS) == []
    # Not vacuous: both outcomes occur for every check kind.
    allowed = _allow_count(policy, DEFAULT_CALLERS, DEFAULT_TOPICS)
    assert 0 < allowed < 4 * len(DEFAULT_CALLERS) * len(DEFAULT_TOPICS)


async def test_default_rules_spot_checks(rls: RlsProbe) -> None:
    policy = Policy.default()
    rls.apply(compile_policy(policy).sql)
    _, alice = await caller(policy, user("alice"))
    _, bob = await caller(policy, user("bob"))
    own = rls.check("authenticated", alice, "private-user-alice")
    assert own == Verdicts(True, False, False, False)
    assert rls.check("authenticated", bob, "private-user-alice") == Verdicts(
        False, False, False, False
    )
    assert rls.check("authenticated", bob, "presence-room") == Verdicts(True, True, False, True)
    assert rls.check("anon", ANON_KEY_CLAIMS, "presence-room") == Verdicts(
        False, False, False, False
    )
    assert rls.check("anon", ANON_KEY_CLAIMS, "news") == Verdicts(True, False, False, False)
    _, uuid_claims = await caller(policy, user(UUID_USER))
    assert rls.check("authenticated", uuid_claims, f"private-user-{UUID_USER}").receive_broadcast


async def test_custom_patterns_claims_and_order_match_the_relay(rls: RlsProbe) -> None:
    policy = Policy.from_toml(CUSTOM, source="custom.toml")
    rls.apply(compile_policy(policy).sql)
    assert await compare(rls, policy, CUSTOM_CALLERS, CUSTOM_TOPICS) == []
    allowed = _allow_count(policy, CUSTOM_CALLERS, CUSTOM_TOPICS)
    assert 0 < allowed < 4 * len(CUSTOM_CALLERS) * len(CUSTOM_TOPICS)


async def test_a_hook_grant_is_denied_in_sql_and_warned_about(
    rls: RlsProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(f"{__name__}.HOOK_ALLOWS", True)
    policy = Policy.from_toml(CUSTOM, source="custom.toml")
    compiled = compile_policy(policy)
    rls.apply(compiled.sql)
    bob = user("bob")
    assert _allowed(policy, bob, Action.SUBSCRIBE, "private-hooked-alice")
    role, claims = await caller(policy, bob)
    assert rls.check(role, claims, "private-hooked-alice").receive_broadcast is False
    assert rls.check(role, claims, "private-hooked-bob").receive_broadcast is True  # user:{x}
    assert any("rule #7 (private-hooked-{x})" in w and "hook" in w for w in compiled.warnings)


async def test_a_reserved_claim_is_denied_even_when_the_relay_grants_it(rls: RlsProbe) -> None:
    policy = Policy.from_toml(
        '[[rule]]\npattern = "private-admin"\nsubscribe = ["claim:role=admin"]\n',
        source="role.toml",
    )
    compiled = compile_policy(policy)
    rls.apply(compiled.sql)
    admin = user("root", role="admin")
    assert _allowed(policy, admin, Action.SUBSCRIBE, "private-admin")
    role, claims = await caller(policy, admin)
    assert claims["role"] == "authenticated"
    assert rls.check(role, claims, "private-admin").receive_broadcast is False
    assert any("'role'" in w for w in compiled.warnings)


async def test_the_migration_is_idempotent_and_replaces_its_own_policies(rls: RlsProbe) -> None:
    custom = compile_policy(Policy.from_toml(CUSTOM, source="custom.toml")).sql
    default = _committed_migration()
    rls.apply(custom)
    rls.apply(default)
    rls.apply(default)
    assert rls.policies() == [
        "realtime-relay: receive (anon)",
        "realtime-relay: receive (authenticated)",
        "realtime-relay: send (authenticated)",
    ]
    role, claims = await caller(Policy.default(), user("alice"))
    # The custom policy denied private-locked-a to everyone; the default, applied last, grants it.
    assert rls.check(role, claims, "private-locked-a").receive_broadcast is True
    # And back: were the default's policies left behind, their grant would still apply (OR).
    rls.apply(custom)
    assert rls.check(role, claims, "private-locked-a").receive_broadcast is False
    assert "realtime-relay: send (anon)" in rls.policies()


async def test_other_permissive_policies_are_reported(rls: RlsProbe) -> None:
    rls.apply(
        'drop policy if exists "someone else\'s" on realtime.messages;'
        'create policy "someone else\'s" on realtime.messages for select to authenticated '
        "using (true);"
    )
    try:
        rls.notices.clear()
        rls.apply(_committed_migration())
        assert any("someone else's" in notice for notice in rls.notices)
    finally:
        rls.apply('drop policy "someone else\'s" on realtime.messages;')


async def test_claims_of_tokens_the_relay_did_not_mint_are_judged_as_the_relay_judges(
    rls: RlsProbe,
) -> None:
    # A Supabase Auth token may carry a policy claim the relay never normalized: a float, a bool,
    # an object. The SQL compares only strings and integers, as ClaimIs does.
    policy = Policy.from_toml(CUSTOM, source="custom.toml")
    rls.apply(compile_policy(policy).sql)
    values: list[Any] = [3, "3", 3.0, 3.5, True, None, {"n": 3}, [3], ["3.5"], [3.5], [True]]
    mismatches = []
    for value in values:
        claims = {"sub": "dave", "role": "authenticated", "level": value}
        who = user("dave", level=value)
        for topic in ("private-level-3", "private-level-3.5", "private-level-3.0"):
            if rls.check("authenticated", claims, topic) != relay_verdicts(policy, who, topic):
                mismatches.append((value, topic))
    assert mismatches == []


async def test_a_sub_that_is_not_a_string_is_no_signed_in_user(rls: RlsProbe) -> None:
    # The relay refuses such a token outright; the SQL treats it as holding no user.
    rls.apply(compile_policy(Policy.default()).sql)
    for sub in (5, "", None, ["alice"]):
        claims = {"sub": sub, "role": "authenticated"}
        assert rls.check("authenticated", claims, "private-chat").receive_broadcast is False
        assert rls.check("authenticated", claims, "private-user-5").receive_broadcast is False
        assert rls.check("authenticated", claims, "presence-room").send_presence is False
    assert rls.check("authenticated", {"sub": "5"}, "private-user-5").receive_broadcast is True
