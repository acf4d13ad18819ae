"""The channel-log operations of every store backend (core/stores: memory, the real Redis under
the run's prefix, DynamoDB on moto), each test on its own channel, and the history over each."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from core.errors import HistoryGap
from core.history import ChannelHistory, parse_id
from core.policy import Policy
from core.provider import Limits, Message
from core.settings import Settings
from tests.integration import test_stores

if TYPE_CHECKING:
    from core.stores.base import Store


# The `store` fixture of test_stores (a fresh store of each backend), registered here under its
# own name: pytest takes a fixture by the name it is bound to in the module.
store = test_stores.store


@pytest.fixture
def name() -> str:
    """A channel of this test alone."""
    return f"c{uuid.uuid4().hex[:12]}"


async def test_a_new_log_starts_under_the_given_epoch_and_counts(store: Store, name: str) -> None:
    assert await store.log_reserve(name, 2, epoch="e1", ttl=60) == ("e1", 2)
    assert await store.log_reserve(name, 1, epoch="e2", ttl=60) == ("e1", 3)  # kept its epoch


async def test_entries_read_back_in_order_after_and_newest(store: Store, name: str) -> None:
    epoch, _ = await store.log_reserve(name, 4, epoch="e1", ttl=60)
    await store.log_append(name, epoch, [(2, b"b"), (1, b"a")], ttl=60, keep=100)
    await store.log_append(name, epoch, [(4, b"d")], ttl=60, keep=100)  # 3 failed: a hole
    page = await store.log_read(name, after=None, limit=10)
    assert page == (epoch, 4, [(1, b"a"), (2, b"b"), (4, b"d")])
    assert (await store.log_read(name, after=1, limit=1)).entries == [(2, b"b")]
    assert (await store.log_read(name, after=2, limit=10)).entries == [(4, b"d")]
    assert (await store.log_read(name, after=None, limit=2)).entries == [(2, b"b"), (4, b"d")]


async def test_a_missing_log_reads_as_none(store: Store, name: str) -> None:
    assert await store.log_read(name, after=None, limit=5) == (None, 0, [])


async def test_an_expired_log_starts_a_new_epoch(store: Store, name: str) -> None:
    await store.log_reserve(name, 1, epoch="old", ttl=0.5)
    await asyncio.sleep(0.8)
    assert await store.log_reserve(name, 1, epoch="new", ttl=60) == ("new", 1)


async def test_entries_of_an_ended_epoch_are_not_read(store: Store, name: str) -> None:
    await store.log_reserve(name, 1, epoch="old", ttl=0.5)
    await asyncio.sleep(0.8)
    await store.log_reserve(name, 1, epoch="new", ttl=60)
    await store.log_append(name, "old", [(1, b"late")], ttl=60, keep=100)
    assert (await store.log_read(name, after=None, limit=5)).entries == []


async def test_concurrent_reservations_never_share_a_number(store: Store, name: str) -> None:
    found = await asyncio.gather(
        *(store.log_reserve(name, 1, epoch=f"e{i}", ttl=60) for i in range(10))
    )
    assert len({epoch for epoch, _ in found}) == 1
    assert sorted(n for _, n in found) == list(range(1, 11))


async def test_history_over_the_store_resumes_or_states_the_gap(store: Store, name: str) -> None:
    policy = Policy.from_toml('[[rule]]\npattern = "{x}"\nhistory = ["anyone"]\n', source="t")
    settings = Settings(history_max_messages=3)
    history = ChannelHistory(settings, policy, store, Limits())
    rules = {name: policy.rule_for(name)}
    pending = await history.reserve([Message(name, f"m{i}", str(i)) for i in range(5)], rules)
    await history.commit(pending)
    ids = [m.history_id or "" for m in pending.messages]
    assert [parse_id(i).seq for i in ids] == [1, 2, 3, 4, 5]
    page = await history.read(name, since=ids[2], limit=10)
    assert [m.name for m in page.messages] == ["m3", "m4"]
    with pytest.raises(HistoryGap):
        await history.read(name, since=ids[0], limit=10)  # trimmed past the cap of 3
    # A second relay process on the same store continues the same epoch.
    other = ChannelHistory(settings, policy, store, Limits())
    more = await other.reserve([Message(name, "m5", "5")], rules)
    await other.commit(more)
    assert parse_id(more.messages[0].history_id or "") == parse_id(ids[0])._replace(seq=6)
