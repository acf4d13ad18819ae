"""GET /v1/channels/{channel}/members and /messages: presence rosters and policy-gated history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app.main import create_app
from app.relay import Relay
from core.policy import Policy
from core.provider import PresenceData
from providers.local.hub import Delivery
from providers.pusherproto.outcome import member_added

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from core.settings import Settings
    from providers.local.provider import LocalProvider
    from tests.unit.conftest import Recorder

PROBLEM = "urn:realtime-relay:problem:"


def _assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + slug
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def roster(relay_provider: LocalProvider, relay_listen: Callable[..., Recorder]) -> list[Recorder]:
    """presence-room with alice (two sockets) and bob."""
    hub = relay_provider.hub
    sockets = [relay_listen(socket_id=s) for s in ("1.1", "1.2", "2.1")]
    hub.subscribe(sockets[0], "presence-room", PresenceData("alice", {"name": "Alice"}))
    hub.subscribe(sockets[1], "presence-room", PresenceData("alice", {"name": "Alice"}))
    hub.subscribe(sockets[2], "presence-room", PresenceData("bob", {}))
    return sockets


async def _publish(http: httpx.AsyncClient, api_key: str, channel: str, *names: str) -> None:
    batch = [{"name": n, "channel": channel, "data": f"data-{n}"} for n in names]
    response = await http.post("/v1/batch", json={"batch": batch}, headers={"X-API-Key": api_key})
    assert response.status_code == 200, response.text


@pytest.mark.usefixtures("roster")
async def test_backend_lists_presence_members_once_per_user(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    response = await http.get(
        "/v1/channels/presence-room/members", headers={"X-API-Key": relay_api_key}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "channel": "presence-room",
        "count": 2,
        "members": [
            {"user_id": "alice", "user_info": {"name": "Alice"}},
            {"user_id": "bob", "user_info": {}},
        ],
    }


@pytest.mark.usefixtures("roster")
async def test_a_user_the_policy_lets_subscribe_lists_members(
    http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await http.get(
        "/v1/channels/presence-room/members", headers=_bearer(relay_token("carol"))
    )
    assert response.status_code == 200, response.text
    assert [m["user_id"] for m in response.json()["members"]] == ["alice", "bob"]


async def test_members_of_an_empty_presence_channel(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    response = await http.get(
        "/v1/channels/presence-empty/members", headers={"X-API-Key": relay_api_key}
    )
    assert response.status_code == 200
    assert response.json() == {"channel": "presence-empty", "count": 0, "members": []}


@pytest.mark.usefixtures("roster")
async def test_anonymous_cannot_list_presence_members(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/channels/presence-room/members")
    body = _assert_problem(response, 401, "unauthenticated")
    assert "alice" not in response.text
    assert "members" not in body


@pytest.mark.parametrize("channel", ["news", "private-room", "private-user-alice"])
async def test_members_of_a_non_presence_channel_is_400(
    http: httpx.AsyncClient, relay_api_key: str, channel: str
) -> None:
    response = await http.get(
        f"/v1/channels/{channel}/members", headers={"X-API-Key": relay_api_key}
    )
    _assert_problem(response, 400, "invalid-channel")


async def test_members_of_a_malformed_channel_is_400(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    response = await http.get(
        "/v1/channels/presence-" + "x" * 200 + "/members", headers={"X-API-Key": relay_api_key}
    )
    _assert_problem(response, 400, "invalid-channel")


STAFF_POLICY = """
[[rule]]
pattern = "presence-staff-{room}"
subscribe = ["claim:role=staff"]
publish = ["backend"]
presence_info = ["name"]
"""


@pytest.fixture
async def staff_http(relay_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    policy = Policy.from_toml(STAFF_POLICY, source="staff test policy")
    app = create_app(relay=Relay.build(relay_settings, policy=policy))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        yield client


async def test_a_user_the_policy_refuses_cannot_list_members(
    staff_http: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    response = await staff_http.get(
        "/v1/channels/presence-staff-ops/members", headers=_bearer(relay_token("alice"))
    )
    _assert_problem(response, 403, "forbidden")


async def test_history_of_a_public_channel_oldest_first(
    http: httpx.AsyncClient, relay_api_key: str, relay_provider: LocalProvider
) -> None:
    await _publish(http, relay_api_key, "news", "one", "two", "three")
    response = await http.get("/v1/channels/news/messages")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["channel"] == "news"
    assert [(m["name"], m["data"]) for m in body["messages"]] == [
        ("one", "data-one"),
        ("two", "data-two"),
        ("three", "data-three"),
    ]
    # The relay keeps news's history (the policy grants it): ids are <channel epoch>:<number>.
    epochs = {m["id"].partition(":")[0] for m in body["messages"]}
    assert len(epochs) == 1
    assert [m["id"].partition(":")[2] for m in body["messages"]] == ["1", "2", "3"]


async def test_history_gives_data_back_as_published(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    published = [{"text": "hi"}, [1, "two"], 3, None, "hi", '{"n":1}', ""]
    batch = [{"name": f"e{i}", "channel": "news", "data": d} for i, d in enumerate(published)]
    response = await http.post(
        "/v1/batch", json={"batch": batch}, headers={"X-API-Key": relay_api_key}
    )
    assert response.status_code == 200, response.text
    response = await http.get("/v1/channels/news/messages")
    assert response.status_code == 200, response.text
    got = [m["data"] for m in response.json()["messages"]]
    assert got == published
    assert [type(d) for d in got] == [type(d) for d in published]  # '{"n":1}' stays a string


async def test_history_limit_keeps_the_most_recent(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    await _publish(http, relay_api_key, "news", "one", "two", "three", "four")
    response = await http.get("/v1/channels/news/messages", params={"limit": 2})
    assert response.status_code == 200
    assert [m["name"] for m in response.json()["messages"]] == ["three", "four"]


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten"])
async def test_history_limit_out_of_range_is_422(http: httpx.AsyncClient, limit: str) -> None:
    response = await http.get("/v1/channels/news/messages", params={"limit": limit})
    body = _assert_problem(response, 422, "invalid-request")
    assert ["query", "limit"] in [e["loc"] for e in body["errors"]]


async def test_history_of_an_unused_channel_is_empty(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/channels/quiet/messages")
    assert response.status_code == 200
    assert response.json() == {"channel": "quiet", "messages": [], "next": None}


async def test_history_excludes_presence_bookkeeping(
    http: httpx.AsyncClient,
    relay_api_key: str,
    roster: list[Recorder],
    relay_provider: LocalProvider,
) -> None:
    # member_added, as the session announces bob's arrival
    joined = member_added("presence-room", PresenceData("bob", {}))
    relay_provider.broadcast(Delivery.of(joined, sender="2.1"))
    assert any(d.internal for d in roster[0].deliveries)
    await _publish(http, relay_api_key, "presence-room", "hello")
    response = await http.get(
        "/v1/channels/presence-room/messages", headers={"X-API-Key": relay_api_key}
    )
    assert [m["name"] for m in response.json()["messages"]] == ["hello"]


async def test_own_private_user_history_is_readable(
    http: httpx.AsyncClient, relay_api_key: str, relay_token: Callable[..., str]
) -> None:
    await _publish(http, relay_api_key, "private-user-alice", "note")
    response = await http.get(
        "/v1/channels/private-user-alice/messages", headers=_bearer(relay_token("alice"))
    )
    assert response.status_code == 200, response.text
    assert [m["data"] for m in response.json()["messages"]] == ["data-note"]


async def test_another_users_private_history_is_403(
    http: httpx.AsyncClient, relay_api_key: str, relay_token: Callable[..., str]
) -> None:
    await _publish(http, relay_api_key, "private-user-alice", "note")
    response = await http.get(
        "/v1/channels/private-user-alice/messages", headers=_bearer(relay_token("bob"))
    )
    _assert_problem(response, 403, "forbidden")
    assert "data-note" not in response.text


async def test_anonymous_private_user_history_is_401(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    await _publish(http, relay_api_key, "private-user-alice", "note")
    response = await http.get("/v1/channels/private-user-alice/messages")
    _assert_problem(response, 401, "unauthenticated")
    assert "data-note" not in response.text


async def test_backend_reads_any_history(http: httpx.AsyncClient, relay_api_key: str) -> None:
    await _publish(http, relay_api_key, "private-room", "secret-plan")
    response = await http.get(
        "/v1/channels/private-room/messages", headers={"X-API-Key": relay_api_key}
    )
    assert response.status_code == 200
    assert [m["name"] for m in response.json()["messages"]] == ["secret-plan"]


@pytest.mark.parametrize("channel", ["private-room", "presence-room"])
async def test_history_the_policy_grants_nobody_is_403_even_for_users(
    http: httpx.AsyncClient, relay_api_key: str, relay_token: Callable[..., str], channel: str
) -> None:
    await _publish(http, relay_api_key, channel, "secret-plan")
    response = await http.get(
        f"/v1/channels/{channel}/messages", headers=_bearer(relay_token("alice"))
    )
    _assert_problem(response, 403, "forbidden")
    assert "secret-plan" not in response.text


async def test_history_of_a_malformed_channel_is_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/channels/bad%20channel/messages")
    _assert_problem(response, 400, "invalid-channel")
