"""Issue 12, finding 11: the local Pusher HTTP API keeps Pusher's own limits.

Pusher takes at most 10 events per batch_events call and 100 channels per trigger; what works
against the local relay must work against Pusher, so the local API refuses more with a 400
too-many-items, whatever RELAY_MAX_CHANNELS_PER_EVENT says. /v1/events keeps its own limit,
RELAY_MAX_CHANNELS_PER_EVENT (100 by default).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from tests.security.conftest import API_HEADERS, APP_ID, PROBLEM, PROBLEM_PREFIX
from tests.security.test_signed_request_normalization import signed_pairs

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    import httpx

    from tests.security.conftest import Target

EVENTS = f"/apps/{APP_ID}/events"
BATCH = f"/apps/{APP_ID}/batch_events"


async def _pusher_post(target: Target, path: str, payload: dict[str, Any]) -> httpx.Response:
    body = orjson.dumps(payload)
    query = urlencode(signed_pairs(body, path=path, timestamp=int(time.time())))
    return await target.http.post(
        f"{path}?{query}", content=body, headers={"Content-Type": "application/json"}
    )


def _channels(count: int) -> list[str]:
    """`count` channels, the watched `open-forge` first."""
    return ["open-forge", *(f"fan-{i}" for i in range(1, count))]


def _assert_too_many(answer: httpx.Response, limit: int) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["type"] == PROBLEM_PREFIX + "too-many-items"
    assert body["limit"] == limit


def _delivered(target: Target) -> list[tuple[str, str, str]]:
    assert target.listener is not None
    return target.listener.events()


async def test_a_trigger_takes_100_channels_and_refuses_101(local_target: Target) -> None:
    over = await _pusher_post(
        local_target, EVENTS, {"name": "over", "channels": _channels(101), "data": "x"}
    )
    _assert_too_many(over, 100)
    local_target.assert_untouched()
    fits = await _pusher_post(
        local_target, EVENTS, {"name": "fits", "channels": _channels(100), "data": "x"}
    )
    assert fits.status_code == 200, fits.text
    assert _delivered(local_target) == [("open-forge", "fits", "x")]
    assert len(local_target.published) == 100


async def test_a_batch_takes_10_events_and_refuses_11(local_target: Target) -> None:
    def batch(count: int, name: str) -> dict[str, Any]:
        return {"batch": [{"channel": "open-forge", "name": name, "data": str(i)}
                          for i in range(count)]}  # fmt: skip

    over = await _pusher_post(local_target, BATCH, batch(11, "over"))
    _assert_too_many(over, 10)
    local_target.assert_untouched()
    fits = await _pusher_post(local_target, BATCH, batch(10, "fits"))
    assert fits.status_code == 200, fits.text
    assert fits.json() == {"batch": [{}] * 10}
    assert _delivered(local_target) == [("open-forge", "fits", str(i)) for i in range(10)]


async def test_pushers_limit_holds_when_the_relays_own_is_raised(
    make_target: Callable[..., AbstractAsyncContextManager[Target]],
) -> None:
    async with make_target("local", max_channels_per_event=500) as target:
        over = await _pusher_post(
            target, EVENTS, {"name": "over", "channels": _channels(101), "data": "x"}
        )
        _assert_too_many(over, 100)
        target.assert_untouched()
        # /v1/events is the relay's own API: there the raised setting applies.
        own = await target.http.post(
            "/v1/events",
            json={"name": "own", "channels": _channels(101), "data": "x"},
            headers=API_HEADERS,
        )
        assert own.status_code == 200, own.text
        assert _delivered(target) == [("open-forge", "own", "x")]


async def test_v1_events_keeps_relay_max_channels_per_event(
    make_target: Callable[..., AbstractAsyncContextManager[Target]],
    local_target: Target,
) -> None:
    assert local_target.settings.max_channels_per_event == 100  # the default
    over = await local_target.http.post(
        "/v1/events",
        json={"name": "over", "channels": _channels(101), "data": "x"},
        headers=API_HEADERS,
    )
    _assert_too_many(over, 100)
    local_target.assert_untouched()
    async with make_target("local", max_channels_per_event=5) as target:
        lowered = await target.http.post(
            "/v1/events",
            json={"name": "over", "channels": _channels(6), "data": "x"},
            headers=API_HEADERS,
        )
        _assert_too_many(lowered, 5)
        # A lower relay setting binds the Pusher API too: it publishes through the same gate.
        pusher = await _pusher_post(
            target, EVENTS, {"name": "over", "channels": _channels(6), "data": "x"}
        )
        _assert_too_many(pusher, 5)
        target.assert_untouched()
