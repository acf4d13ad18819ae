"""ProviderPair: a Pusher provider (against a fake Pusher that checks every signature) as the
primary and the real local provider as the secondary, in mirror and in failover mode."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from core.errors import NotSupported, ProviderError, ProviderUnavailable
from core.provider import Limits, Message, PresenceData
from core.publishing import answer_of
from core.settings import Settings
from providers.local.provider import LocalProvider
from providers.pair import ProviderPair, neither, paired_limits
from providers.pusher.provider import PusherProvider
from providers.pusherproto import signing
from tests.unit.conftest import UNIT_SETTINGS, Recorder
from tests.unit.providers.pusher.test_api import KEY, SECRET, FakePusher, make_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.unit.providers.pusher.test_api import Call


class Switch:
    """The fake Pusher's state: up, down (503), or refusing (400)."""

    def __init__(self) -> None:
        self.state = "up"
        self.users: list[dict[str, Any]] = []

    def __call__(self, call: Call) -> httpx.Response:
        if self.state == "down":
            return httpx.Response(503, text="unavailable")
        if self.state == "refusing":
            return httpx.Response(400, text="bad event")
        if call.path.endswith("/users"):
            return httpx.Response(200, json={"users": self.users})
        if call.method == "GET" and "/channels/" in call.path:
            return httpx.Response(200, json={"occupied": True, "subscription_count": 2})
        return httpx.Response(200, json={})


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
async def pusher(switch: Switch) -> AsyncIterator[tuple[PusherProvider, FakePusher]]:
    fake = FakePusher(reply=switch)
    settings = make_settings(max_attempts=1)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(fake), base_url=settings.base_url
    ) as client:
        provider = PusherProvider(settings, http=client)
        yield provider, fake
        await provider.aclose()


@pytest.fixture
def local() -> LocalProvider:
    return LocalProvider(Settings(**UNIT_SETTINGS))


@pytest.fixture
def make_pair(
    pusher: tuple[PusherProvider, FakePusher], local: LocalProvider
) -> Callable[..., ProviderPair]:
    def build(mode: str, **kw: Any) -> ProviderPair:
        return ProviderPair(pusher[0], local, mode=mode, **kw)  # type: ignore[arg-type]

    return build


def listen(local: LocalProvider, channel: str) -> Recorder:
    recorder = Recorder("9999.1")
    local.hub.subscribe(recorder, channel)
    return recorder


def one(channel: str = "news", data: str = "1") -> list[Message]:
    return [Message(channel, "ev", data, None, "m-0")]


def published(fake: FakePusher) -> int:
    return sum(len(c.body["batch"]) if "batch" in c.body else 1 for c in fake.calls if c.body)


# -- failover ---------------------------------------------------------------------------------
async def test_failover_sends_to_the_primary_while_it_is_up(
    make_pair: Callable[..., ProviderPair], pusher: tuple[PusherProvider, FakePusher], local: Any
) -> None:
    pair = make_pair("failover")
    heard = listen(local, "news")
    receipts = await pair.publish(one())
    assert [(r.provider, r.failed) for r in receipts] == [("pusher", None)]
    assert published(pusher[1]) == 1
    assert heard.events == []


async def test_failover_sends_to_the_secondary_when_the_primary_fails_and_back_when_it_recovers(
    make_pair: Callable[..., ProviderPair],
    pusher: tuple[PusherProvider, FakePusher],
    local: Any,
    switch: Switch,
) -> None:
    pair = make_pair("failover", failures=2, cooldown=0.2)
    heard = listen(local, "news")
    fake = pusher[1]
    switch.state = "down"
    for n in range(4):
        receipts = await pair.publish(one(data=str(n)))
        assert [r.provider for r in receipts] == ["local"]
    # Two failures opened the primary's breaker: the next two never called it.
    assert len(fake.calls) == 2
    assert pair.breakers["pusher"].state == "open"
    assert [e[2] for e in heard.events] == ["0", "1", "2", "3"]
    switch.state = "up"
    await asyncio.sleep(0.25)  # the cooldown: the next call probes the primary
    receipts = await pair.publish(one(data="back"))
    assert [r.provider for r in receipts] == ["pusher"]
    assert pair.breakers["pusher"].state == "closed"
    assert [e[2] for e in heard.events] == ["0", "1", "2", "3"]  # nothing more on the secondary


async def test_failover_does_not_resend_what_the_primary_refused(
    make_pair: Callable[..., ProviderPair], local: Any, switch: Switch
) -> None:
    pair = make_pair("failover")
    heard = listen(local, "news")
    switch.state = "refusing"  # a 4xx: the secondary would refuse it too, or deliver it twice
    with pytest.raises(ProviderError) as refused:
        await pair.publish(one())
    assert not refused.value.retryable
    assert heard.events == []


async def test_failover_with_both_failing_names_both(
    make_pair: Callable[..., ProviderPair], local: LocalProvider, switch: Switch
) -> None:
    pair = make_pair("failover")
    switch.state = "down"
    local.drain()  # the local provider refuses publishes with 503 while draining
    with pytest.raises(ProviderUnavailable) as failed:
        await pair.publish(one())
    assert failed.value.detail.startswith("pusher: ")
    assert "; local: " in failed.value.detail


# -- mirror -----------------------------------------------------------------------------------
async def test_mirror_sends_every_publish_to_both(
    make_pair: Callable[..., ProviderPair], pusher: tuple[PusherProvider, FakePusher], local: Any
) -> None:
    pair = make_pair("mirror")
    heard = listen(local, "news")
    receipts = await pair.publish(one())
    assert sorted((r.provider, r.id, r.failed) for r in receipts) == [
        ("local", "m-0", None),
        ("pusher", "m-0", None),
    ]
    assert published(pusher[1]) == 1
    assert heard.events == [("news", "ev", "1")]
    answer = answer_of(receipts, pair.name)
    assert answer["providers"] == {"pusher": {"accepted": 1}, "local": {"accepted": 1}}
    assert answer["provider"] == "pusher"
    assert answer["accepted"] == 1


async def test_mirror_answers_what_each_took_when_one_fails(
    make_pair: Callable[..., ProviderPair], local: Any, switch: Switch
) -> None:
    pair = make_pair("mirror")
    heard = listen(local, "news")
    switch.state = "down"
    receipts = await pair.publish(one())
    answer = answer_of(receipts, pair.name)
    assert answer["providers"] == {
        "pusher": {"accepted": 0, "failed": "provider-error"},  # a 503: retryable
        "local": {"accepted": 1},
    }
    assert answer["provider"] == "local"
    assert answer["accepted"] == 1
    assert [r["provider"] for r in answer["receipts"]] == ["local"]
    assert heard.events == [("news", "ev", "1")]


async def test_mirror_raises_when_neither_took_it(
    make_pair: Callable[..., ProviderPair], local: LocalProvider, switch: Switch
) -> None:
    pair = make_pair("mirror")
    switch.state = "down"
    local.drain()
    with pytest.raises(ProviderUnavailable):
        await pair.publish(one())


async def test_mirror_unites_members_and_sums_subscriptions(
    make_pair: Callable[..., ProviderPair], local: LocalProvider, switch: Switch
) -> None:
    pair = make_pair("mirror")
    switch.users = [{"id": "ann"}, {"id": "bob"}]
    local.hub.subscribe(Recorder("9999.2"), "presence-room", PresenceData("bob", {"n": 1}))
    local.hub.subscribe(Recorder("9999.3"), "presence-room", PresenceData("cy", {}))
    members = await pair.members("presence-room")
    assert sorted(m.user_id for m in members) == ["ann", "bob", "cy"]  # bob once
    assert (await pair.occupancy("presence-room")).user_count == 3
    listen(local, "news")
    occupancy = await pair.occupancy("news")
    assert occupancy.occupied
    assert occupancy.subscription_count == 3  # the fake Pusher's 2 and the local 1


async def test_mirror_sends_user_events_to_both(
    make_pair: Callable[..., ProviderPair],
    pusher: tuple[PusherProvider, FakePusher],
    local: LocalProvider,
    switch: Switch,
) -> None:
    pair = make_pair("mirror")
    heard = listen(local, "#server-to-user-ann")
    await pair.send_to_user("ann", "note", "{}")
    assert pusher[1].event_calls()[-1]["channels"] == ["#server-to-user-ann"]
    switch.state = "down"
    await pair.send_to_user("ann", "again", "{}")  # the local one took it: not an error
    assert [e[1] for e in heard.events] == ["note", "again"]


# -- signing for clients ------------------------------------------------------------------------
def test_the_first_that_signs_answers_a_channel_authorization(
    make_pair: Callable[..., ProviderPair], local: LocalProvider
) -> None:
    pair = make_pair("failover")
    answer = pair.authorize_channel(socket_id="1.2", channel="private-a", presence=None)
    assert answer["auth"] == signing.channel_auth(KEY, SECRET, socket_id="1.2", channel="private-a")
    assert pair.part("local") is local
    assert pair.part("ably") is None


async def test_a_pair_takes_no_webhook_itself(make_pair: Callable[..., ProviderPair]) -> None:
    with pytest.raises(NotSupported):
        make_pair("mirror").parse_webhook({}, b"")


# -- pieces ---------------------------------------------------------------------------------------
def test_paired_limits_are_what_both_take() -> None:
    a = Limits(max_payload_bytes=10_240, supports_encrypted_channels=True, keeps_history=True)
    b = Limits(
        max_payload_bytes=65_536,
        max_channel_name=100,
        idempotent_ids_seconds=120,
        encryption_key_variable="RELAY_ENCRYPTION_MASTER_KEY_BASE64",
    )
    both = paired_limits(a, b)
    assert both.max_payload_bytes == 10_240
    assert both.max_channel_name == 100
    assert both.idempotent_ids_seconds == 0
    assert not both.supports_encrypted_channels
    assert both.encryption_key_variable == "RELAY_ENCRYPTION_MASTER_KEY_BASE64"
    assert not both.keeps_history


def test_neither_keeps_the_most_cautious_error() -> None:
    from core.errors import ProviderTimeout

    timed_out = neither([("a", ProviderTimeout("slow")), ("b", ProviderUnavailable("down"))])
    assert isinstance(timed_out, ProviderTimeout)  # either may have taken it
    down = neither([("a", ProviderUnavailable("x", retry_after=7)), ("b", ProviderError("no"))])
    assert isinstance(down, ProviderUnavailable)
    assert down.retry_after == 7
    refused = neither([("a", ProviderError("no")), ("b", ProviderError("no"))])
    assert type(refused) is ProviderError


def test_a_pair_is_two_different_providers(local: LocalProvider) -> None:
    with pytest.raises(ValueError, match="two different"):
        ProviderPair(local, local, mode="mirror")
