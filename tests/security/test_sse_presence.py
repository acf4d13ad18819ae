"""Issue 12, finding 6: an SSE stream on a presence channel is a member, not an unseen listener.

`GET /v1/stream?channel=presence-x` received every event of the channel while no WebSocket
member was told and the roster did not list it. Now the stream joins as its caller, with the
user_id and user_info /auth/channel signs for that caller: `member_added` when it opens,
`member_removed` when the user's last socket or stream there closes. Only a signed-in user the
policy lets subscribe joins; an anonymous caller (401) or a backend (403) gets no stream at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.security.conftest import (
    API_HEADERS,
    APP_KEY,
    PROBLEM,
    PROBLEM_PREFIX,
    bearer,
    serve,
    user_token,
)
from tests.unit.conftest import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.security.conftest import Target

CHANNEL = "presence-x"
WITHIN = 3.0


class Member:
    """A pusher-js-like WebSocket member: signs its subscription at /auth/channel like pusher-js."""

    def __init__(self, ws: ClientConnection, http: httpx.AsyncClient, socket_id: str) -> None:
        self.ws = ws
        self.http = http
        self.socket_id = socket_id

    async def next(self) -> dict[str, Any]:
        """The next frame, with its `data` decoded when it is a JSON string."""
        frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.ws.recv(), WITHIN))
        if isinstance(frame.get("data"), str) and frame["data"].startswith("{"):
            frame["data"] = orjson.loads(frame["data"])
        return frame

    async def join(self, token: str, channel: str = CHANNEL) -> dict[str, Any]:
        """Sign at /auth/channel, subscribe, and return the roster of subscription_succeeded."""
        signed = await self.http.post(
            "/auth/channel",
            data={"socket_id": self.socket_id, "channel_name": channel},
            headers=bearer(token),
        )
        assert signed.status_code == 200, signed.text
        frame = {"event": "pusher:subscribe", "data": {"channel": channel, **signed.json()}}
        await self.ws.send(orjson.dumps(frame).decode())
        answer = await self.next()
        assert answer["event"] == "pusher_internal:subscription_succeeded", answer
        roster: dict[str, Any] = answer["data"]["presence"]
        return roster


@pytest.fixture
async def port(local_target: Target, lean_sse: bool) -> AsyncIterator[int]:
    """The local relay under uvicorn: EventSource streams and sockets need a real server."""
    async with serve(local_target.app, guarded=lean_sse) as found:
        yield found


@pytest.fixture
async def http(port: int) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the served relay."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        yield client


@pytest.fixture
def member(
    port: int, http: httpx.AsyncClient
) -> Callable[[], contextlib.AbstractAsyncContextManager[Member]]:
    """`async with member() as m:` a connected WebSocket client, not yet subscribed."""

    @contextlib.asynccontextmanager
    async def open_() -> AsyncIterator[Member]:
        url = f"ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7"
        async with connect(url, ping_interval=None, open_timeout=5) as ws:
            hello = orjson.loads(await asyncio.wait_for(ws.recv(), WITHIN))
            assert hello["event"] == "pusher:connection_established"
            yield Member(ws, http, orjson.loads(hello["data"])["socket_id"])

    return open_


@contextlib.asynccontextmanager
async def sse(http: httpx.AsyncClient, token: str) -> AsyncIterator[httpx.Response]:
    """An EventSource-like stream on CHANNEL (the token in the query), open once `connected`."""
    params = {"channel": CHANNEL, "token": token}
    async with http.stream("GET", "/v1/stream", params=params) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await anext(lines) == "retry: 3000"
        assert orjson.loads((await anext(lines)).removeprefix("data: "))["type"] == "connected"
        yield response


async def signed_channel_data(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """The presence channel_data /auth/channel signs for this token's user."""
    answer = await http.post(
        "/auth/channel",
        data={"socket_id": "1.2", "channel_name": CHANNEL},
        headers=bearer(token),
    )
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = orjson.loads(answer.json()["channel_data"])
    return data


async def member_ids(http: httpx.AsyncClient) -> list[str]:
    """The user ids GET /v1/channels/presence-x/members lists (asked as the backend)."""
    answer = await http.get(f"/v1/channels/{CHANNEL}/members", headers=API_HEADERS)
    assert answer.status_code == 200, answer.text
    return sorted(m["user_id"] for m in answer.json()["members"])


async def publish(http: httpx.AsyncClient, name: str) -> None:
    """Publish an application event on CHANNEL as the backend."""
    event = {"name": name, "channel": CHANNEL, "data": "x"}
    answer = await http.post("/v1/events", json=event, headers=API_HEADERS)
    assert answer.status_code == 200, answer.text


async def stream_gone(target: Target, count: int) -> None:
    """Wait until the hub holds `count` subscribers on CHANNEL (a closed stream has left)."""
    assert target.local is not None
    hub = target.local.hub
    await eventually(lambda: hub.subscriber_count(CHANNEL) == count, within=WITHIN)


async def test_an_sse_user_joins_and_leaves_as_the_member_auth_channel_signs(
    member: Callable[[], contextlib.AbstractAsyncContextManager[Member]],
    http: httpx.AsyncClient,
    local_target: Target,
) -> None:
    alice = user_token("alice")
    async with member() as bob:
        await bob.join(user_token("bob"))
        async with sse(http, alice):
            added = await bob.next()
            assert added["event"] == "pusher_internal:member_added"
            assert added["channel"] == CHANNEL
            assert added["data"] == await signed_channel_data(http, alice)
            assert added["data"] == {"user_id": "alice", "user_info": {"name": "Alice"}}
            assert await member_ids(http) == ["alice", "bob"]
        await stream_gone(local_target, 1)
        removed = await bob.next()
        assert removed == {
            "event": "pusher_internal:member_removed",
            "channel": CHANNEL,
            "data": {"user_id": "alice"},
        }
        assert await member_ids(http) == ["bob"]


async def test_a_socket_that_joins_later_sees_the_sse_user_in_the_roster(
    member: Callable[[], contextlib.AbstractAsyncContextManager[Member]],
    http: httpx.AsyncClient,
) -> None:
    async with sse(http, user_token("alice")), member() as bob:
        roster = await bob.join(user_token("bob"))
        assert roster["ids"] == ["alice", "bob"]
        assert roster["hash"]["alice"] == {"name": "Alice"}


async def test_a_user_on_a_socket_and_a_stream_is_one_member_until_both_leave(
    member: Callable[[], contextlib.AbstractAsyncContextManager[Member]],
    http: httpx.AsyncClient,
    local_target: Target,
) -> None:
    alice = user_token("alice")
    async with member() as bob:
        await bob.join(user_token("bob"))
        async with sse(http, alice):
            assert (await bob.next())["event"] == "pusher_internal:member_added"
            async with member() as alice_socket:
                await alice_socket.join(alice)
                await publish(http, "while-both")
                assert (await bob.next())["event"] == "while-both"  # no second member_added
            await stream_gone(local_target, 2)  # bob and the stream
            await publish(http, "after-the-socket")
            assert (await bob.next())["event"] == "after-the-socket"  # alice is still there
            assert await member_ids(http) == ["alice", "bob"]
        await stream_gone(local_target, 1)
        removed = await bob.next()
        assert removed["event"] == "pusher_internal:member_removed"
        assert removed["data"] == {"user_id": "alice"}


async def test_only_a_signed_in_user_joins(http: httpx.AsyncClient, local_target: Target) -> None:
    anonymous = await http.get("/v1/stream", params={"channel": CHANNEL})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == PROBLEM
    assert anonymous.json()["type"] == PROBLEM_PREFIX + "unauthenticated"
    backend = await http.get("/v1/stream", params={"channel": CHANNEL}, headers=API_HEADERS)
    assert backend.status_code == 403
    assert backend.json()["type"] == PROBLEM_PREFIX + "forbidden"
    async with sse(http, user_token("carol")):
        assert await member_ids(http) == ["carol"]
    await stream_gone(local_target, 0)
    assert await member_ids(http) == []


async def test_user_info_over_the_limit_is_refused_as_auth_channel_refuses_it(
    http: httpx.AsyncClient,
) -> None:
    token = user_token("dave", name="D" * 2000)
    signed = await http.post(
        "/auth/channel", data={"socket_id": "1.2", "channel_name": CHANNEL}, headers=bearer(token)
    )
    assert signed.status_code == 413
    async with http.stream(
        "GET", "/v1/stream", params={"channel": CHANNEL, "token": token}
    ) as response:
        assert response.status_code == 413
        await response.aread()
    assert response.json()["type"] == PROBLEM_PREFIX + "payload-too-large"
    assert await member_ids(http) == []
