"""Which events go out."""

from __future__ import annotations

from core.provider import ChannelEvent
from core.webhooks.filters import Filter


def test_no_filter_keeps_everything() -> None:
    assert Filter().keeps(ChannelEvent("client_event", "private-a", 1))


def test_channel_patterns_are_anchored_globs() -> None:
    f = Filter(["presence-*", "orders"])
    assert f.channel("presence-room")
    assert f.channel("orders")
    assert not f.channel("orders-2")
    assert not f.channel("private-presence-x")
    assert not Filter(["a.b"]).channel("aXb")  # the rest is literal


def test_kinds_filter_keeps_the_partner_of_a_held_kind() -> None:
    f = Filter(kinds=["member_removed"])
    assert f.keeps(ChannelEvent("member_removed", "presence-a", 1, user_id="u"))
    # kept so that a rejoin still cancels the held leave; not delivered (f.kind says no)
    assert f.keeps(ChannelEvent("member_added", "presence-a", 1, user_id="u"))
    assert not f.kind("member_added")
    assert not f.keeps(ChannelEvent("client_event", "presence-a", 1))
