"""GET /v1/channels/{c}/messages?since=: what followed an id, the continuation, the gap (410)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

PROBLEM = "urn:realtime-relay:problem:"


async def _publish(http: httpx.AsyncClient, api_key: str, channel: str, *names: str) -> None:
    batch = [{"name": n, "channel": channel, "data": {"n": n}} for n in names]
    response = await http.post("/v1/batch", json={"batch": batch}, headers={"X-API-Key": api_key})
    assert response.status_code == 200, response.text


async def _messages(http: httpx.AsyncClient, channel: str, **params: Any) -> httpx.Response:
    return await http.get(f"/v1/channels/{channel}/messages", params=params)


async def test_since_answers_what_followed_and_a_continuation(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    await _publish(http, relay_api_key, "news", "a", "b", "c", "d")
    ids = [m["id"] for m in (await _messages(http, "news")).json()["messages"]]
    body = (await _messages(http, "news", since=ids[0], limit=2)).json()
    assert [(m["name"], m["data"]) for m in body["messages"]] == [
        ("b", {"n": "b"}),
        ("c", {"n": "c"}),
    ]
    assert body["next"] == ids[2]
    body = (await _messages(http, "news", since=body["next"], limit=2)).json()
    assert [m["id"] for m in body["messages"]] == [ids[3]]
    assert body["next"] is None


async def test_an_id_of_another_epoch_is_410_history_gap_with_the_latest_id(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    await _publish(http, relay_api_key, "news", "a")
    (latest,) = [m["id"] for m in (await _messages(http, "news")).json()["messages"]]
    response = await _messages(http, "news", since="0badf00d:1")
    assert response.status_code == 410
    body = response.json()
    assert body["type"] == PROBLEM + "history-gap"
    assert body["channel"] == "news"
    assert body["latest"] == latest


async def test_a_trimmed_id_is_410(
    http: httpx.AsyncClient, relay_api_key: str, relay_app: FastAPI
) -> None:
    relay_app.state.relay.history.keep = 2
    await _publish(http, relay_api_key, "news", "a", "b", "c", "d")
    first = (await _messages(http, "news")).json()["messages"][0]["id"]
    epoch = first.partition(":")[0]
    # Kept: 3 and 4. The history continues from an id while it still holds its message.
    assert (await _messages(http, "news", since=f"{epoch}:2")).status_code == 410
    assert (await _messages(http, "news", since=f"{epoch}:3")).json()["messages"][0]["name"] == "d"


async def test_a_malformed_since_is_400(http: httpx.AsyncClient) -> None:
    response = await _messages(http, "news", since="not-an-id")
    assert response.status_code == 400
    assert response.json()["type"] == PROBLEM + "invalid-request"


async def test_since_on_a_channel_without_relay_history_is_501(
    http: httpx.AsyncClient, relay_api_key: str
) -> None:
    response = await http.get(
        "/v1/channels/private-room/messages",
        params={"since": "0badf00d:1"},
        headers={"X-API-Key": relay_api_key},
    )
    assert response.status_code == 501
    assert response.json()["type"] == PROBLEM + "not-supported"
