"""/docs from the relay's own files, and a schema listing what the configured provider serves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from app.docs import ROUTE_NEEDS
from app.main import create_app
from app.relay import Relay
from providers.ably.provider import AblyProvider
from providers.ably.settings import AblySettings

if TYPE_CHECKING:
    import httpx

    from core.settings import Settings


async def test_the_page_loads_swagger_ui_from_the_relay_only(http: httpx.AsyncClient) -> None:
    page = await http.get("/docs")
    assert page.status_code == 200
    sources = [part.split('"')[1] for part in page.text.split("src=")[1:]]
    sources += [part.split('"')[1] for part in page.text.split("href=")[1:]]
    assert sources, page.text
    assert all(s.startswith("/docs/assets/") for s in sources), sources
    assert "http://" not in page.text
    assert "https://" not in page.text
    for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")):
        asset = await http.get(f"/docs/assets/{name}")
        assert asset.status_code == 200
        assert kind in asset.headers["content-type"]
        assert len(asset.content) > 10_000


@pytest.mark.parametrize("name", ["index.html", "swagger-ui.js.map", "..%2F__init__.py", "x"])
async def test_only_the_pages_assets_are_served(http: httpx.AsyncClient, name: str) -> None:
    answer = await http.get(f"/docs/assets/{name}")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


async def test_redoc_which_needs_a_cdn_is_off(http: httpx.AsyncClient) -> None:
    assert (await http.get("/redoc")).status_code == 404


async def test_the_local_schema_lists_no_route_local_answers_with_501(
    http: httpx.AsyncClient,
) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert "/auth/token" not in paths
    assert "/v1/webhooks/{provider}" not in paths
    for served in ("/auth/channel", "/auth/user", "/v1/users/{user_id}/events", "/v1/events"):
        assert served in paths
    # Left out of the schema, still answered (501 with a problem, as before).
    assert (await http.get("/auth/token")).status_code == 501


async def test_the_ably_schema_lists_tokens_not_pusher_signatures(relay_settings: Settings) -> None:
    provider = AblyProvider(AblySettings(api_key=SecretStr("app.key:secret")))
    app = create_app(relay=Relay.build(relay_settings, provider=provider))
    paths = app.openapi()["paths"]
    assert "/auth/token" in paths
    assert "/v1/webhooks/{provider}" in paths
    for unserved in ("/auth/channel", "/auth/user", "/v1/users/{user_id}/events"):
        assert unserved not in paths
    assert set(ROUTE_NEEDS) - set(paths) == {
        "/auth/channel",
        "/auth/user",
        "/v1/channels/{channel}",  # Ably's occupancy needs its channel metadata API: not built
        "/v1/users/{user_id}/events",
        "/v1/users/{user_id}/terminate",
    }
