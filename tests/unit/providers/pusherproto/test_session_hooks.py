"""The session's webhook events (Outcome.hooks): decided beside the broadcasts, on any port."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.provider import ChannelEvent
from providers.pusherproto.cache import CacheEntry
from providers.pusherproto.config import SessionConfig
from tests.unit.providers.pusherproto.test_session import (
    NOW,
    Channels,
    channels,
    clock,
    config,
    connect,
)

if TYPE_CHECKING:
    from providers.pusherproto.outcome import Outcome

__all__ = ["channels", "clock", "config"]  # the fixtures, shared
T = int(NOW * 1000)


def kinds(outcome: Outcome) -> list[tuple[str, str, str | None]]:
    return [(h.kind, h.channel, h.user_id) for h in outcome.hooks]


async def test_the_first_and_last_subscription_occupy_and_vacate(
    config: SessionConfig, channels: Channels
) -> None:
    ann, bob = connect(config, channels, "1.1"), connect(config, channels, "2.2")
    assert (await ann.subscribe("news")).hooks == [ChannelEvent("channel_occupied", "news", T)]
    assert (await bob.subscribe("news")).hooks == []
    assert (await ann.send("pusher:unsubscribe", {"channel": "news"})).hooks == []
    left = await bob.session.close()
    assert left.hooks == [ChannelEvent("channel_vacated", "news", T)]


async def test_presence_members_are_added_once_and_removed_after_the_last_connection(
    config: SessionConfig, channels: Channels
) -> None:
    tab1, tab2 = connect(config, channels, "1.1"), connect(config, channels, "2.2")
    joined = await tab1.subscribe_signed("presence-room", {"user_id": "ann"})
    assert kinds(joined) == [
        ("channel_occupied", "presence-room", None),
        ("member_added", "presence-room", "ann"),
    ]
    assert kinds(await tab2.subscribe_signed("presence-room", {"user_id": "ann"})) == []
    assert kinds(await tab1.session.close()) == []
    assert kinds(await tab2.session.close()) == [
        ("member_removed", "presence-room", "ann"),
        ("channel_vacated", "presence-room", None),
    ]


async def test_a_client_event_is_reported_with_its_sender(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    await client.subscribe_signed("presence-room", {"user_id": "ann"})
    sent = await client.trigger("presence-room", "client-typing", {"on": True})
    assert sent.hooks == [
        ChannelEvent(
            "client_event",
            "presence-room",
            T,
            user_id="ann",
            event="client-typing",
            data='{"on":true}',
            socket_id="1.1",
        )
    ]
    refused = await client.trigger("news")  # not subscribed: no event, no hook
    assert refused.hooks == []


async def test_an_empty_cache_channel_is_a_cache_miss(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    assert kinds(await client.subscribe("cache-scores")) == [
        ("channel_occupied", "cache-scores", None),
        ("cache_miss", "cache-scores", None),
    ]
    channels.cache["cache-late"] = CacheEntry("score", "{}", expires=NOW + 60)
    assert kinds(await client.subscribe("cache-late")) == [("channel_occupied", "cache-late", None)]


async def test_announced_subscription_counts_are_reported(
    config: SessionConfig, channels: Channels
) -> None:
    counting = SessionConfig(
        app_key=config.app_key,
        app_secret=config.app_secret,
        limits=config.limits,
        gate=config.gate,
        policy=config.policy,
        subscription_counts=True,
        clock=config.clock,
    )
    ann, bob = connect(counting, channels, "1.1"), connect(counting, channels, "2.2")
    await ann.subscribe("news")
    second = await bob.subscribe("news")
    assert second.hooks == [ChannelEvent("subscription_count", "news", T, data="2")]


async def test_the_protocols_own_channels_are_nobodys_news(
    config: SessionConfig, channels: Channels
) -> None:
    client = connect(config, channels)
    await client.sign_in("ann")
    assert (await client.subscribe("#server-to-user-ann")).hooks == []
