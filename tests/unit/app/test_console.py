"""The console's routes (app/console): where it is served, the page's safety headers and files,
and its key-only API. The page itself runs in Chromium in tests/e2e/test_console.py."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app import console
from app.console.routes import CSP, FILES, STATIC
from app.main import create_app
from core.settings import DEV_API_KEY, Settings
from tests.unit.conftest import Recorder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from fastapi import FastAPI

    from providers.local.provider import LocalProvider

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("env", "setting", "provider", "served"),
    [
        ("development", "auto", "local", True),
        ("test", "auto", "local", False),
        ("production", "auto", "local", False),
        ("production", "on", "local", True),
        ("development", "off", "local", False),
        ("development", "on", "pusher", False),  # no sockets of its own to show
    ],
)
def test_where_the_console_is_served(
    relay_settings: Settings, env: str, setting: str, provider: str, served: bool
) -> None:
    chosen = {"env": env, "console": setting, "provider": provider}
    assert console.enabled(relay_settings.model_copy(update=chosen)) is served


@pytest.fixture
def console_app(relay_settings: Settings) -> FastAPI:
    """The unit relay with RELAY_CONSOLE=on (RELAY_ENV=test)."""
    return create_app(relay_settings.model_copy(update={"console": "on"}))


@pytest.fixture
async def on(console_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `console_app`."""
    transport = httpx.ASGITransport(app=console_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        yield client


def keyed(api_key: str) -> dict[str, str]:
    """The header the page sends its key in."""
    return {"X-API-Key": api_key}


async def test_off_outside_development_unless_turned_on(http: httpx.AsyncClient) -> None:
    for path in ("/console", "/console/static/console.js", "/console/api/defaults"):
        assert (await http.get(path)).status_code == 404


async def test_the_page_is_static_with_a_strict_csp(on: httpx.AsyncClient) -> None:
    page = await on.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP
    assert "unsafe" not in CSP
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    html = page.text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert len(scripts) == 2
    assert all('src="/console/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
    assert "style=" not in html
    assert "http://" not in html
    assert "https://" not in html
    # Inputs carry no name: a form submitted without the script sends nothing.
    assert not re.search(r"<(input|textarea)[^>]*\sname=", html)


async def test_every_file_the_page_names_is_served(on: httpx.AsyncClient) -> None:
    html = (await on.get("/console")).text
    named = re.findall(r'(?:src|href)="/console/static/([^"]+)"', html)
    assert set(named) == {"console.css", "console.js", "icon.svg", "vendor/pusher.min.js"}
    for name in sorted(FILES):
        answer = await on.get(f"/console/static/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["x-content-type-options"] == "nosniff"
    kinds = {"console.js": "javascript", "console.css": "text/css", "icon.svg": "image/svg+xml"}
    for name, kind in kinds.items():
        assert kind in (await on.get(f"/console/static/{name}")).headers["content-type"]


@pytest.mark.parametrize(
    "name", ["index.html", "../routes.py", "..%2Froutes.py", "vendor", "nope.js", "%2e%2e/x"]
)
async def test_nothing_else_of_the_package_is_served(on: httpx.AsyncClient, name: str) -> None:
    assert (await on.get(f"/console/static/{name}")).status_code == 404


async def test_the_script_writes_no_html() -> None:
    script = (STATIC / "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    assert "localStorage" not in script  # the key lives in the tab (sessionStorage) only


@pytest.mark.parametrize("path", ["/console/api/config", "/console/api/channels"])
async def test_the_api_answers_only_a_backend_key(
    on: httpx.AsyncClient, path: str, relay_token: Callable[..., str]
) -> None:
    assert (await on.get(path)).status_code == 401
    assert (await on.get(path, headers=keyed("wrong-key-0123456789abc"))).status_code == 401
    user = {"Authorization": f"Bearer {relay_token('alice')}"}
    refused = await on.get(path, headers=user)
    assert refused.status_code == 403
    assert "backend key" in refused.json()["detail"]
    # A key in the URL is refused, not read (it would land in logs).
    assert (await on.get(path, params={"token": "unit-api-key-0123456789"})).status_code == 401


async def test_config_tells_the_page_what_pusher_js_needs(
    on: httpx.AsyncClient, relay_api_key: str
) -> None:
    answer = await on.get("/console/api/config", headers=keyed(relay_api_key))
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json() == {
        "app_key": "unit-key",
        "allowed_origins": ["*"],
        "member": "relay-console",
    }
    assert relay_api_key not in answer.text


async def test_channels_lists_the_occupied_ones_with_their_counts(
    on: httpx.AsyncClient, console_app: FastAPI, relay_api_key: str
) -> None:
    provider: LocalProvider = console_app.state.relay.provider
    first, second = Recorder("1.1"), Recorder("1.2")
    provider.hub.subscribe(first, "news")
    provider.hub.subscribe(second, "news")
    provider.hub.subscribe(first, "scores")
    answer = (await on.get("/console/api/channels", headers=keyed(relay_api_key))).json()
    assert answer == {
        "channels": [
            {"channel": "news", "subscriptions": 2, "users": None},
            {"channel": "scores", "subscriptions": 1, "users": None},
        ]
    }


def _signature(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


async def test_auth_signs_the_consoles_socket_for_a_private_channel(
    on: httpx.AsyncClient, relay_api_key: str, relay_settings: Settings
) -> None:
    body = {"socket_id": "123.456", "channel_name": "private-user-42"}
    answer = await on.post("/console/api/auth", json=body, headers=keyed(relay_api_key))
    assert answer.status_code == 200, answer.text
    secret = relay_settings.app_secret.get_secret_value()
    assert answer.json() == {
        "auth": "unit-key:" + _signature(secret, "123.456:private-user-42"),
    }


async def test_auth_joins_a_presence_channel_as_the_console(
    on: httpx.AsyncClient, relay_api_key: str, relay_settings: Settings
) -> None:
    body = {"socket_id": "123.456", "channel_name": "presence-lobby"}
    answer = (await on.post("/console/api/auth", json=body, headers=keyed(relay_api_key))).json()
    data = json.loads(answer["channel_data"])
    assert data == {"user_id": "relay-console", "user_info": {"name": "relay console"}}
    secret = relay_settings.app_secret.get_secret_value()
    expected = _signature(secret, f"123.456:presence-lobby:{answer['channel_data']}")
    assert answer["auth"] == f"unit-key:{expected}"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"socket_id": "123.456", "channel_name": "news"}, "public channels need no"),
        ({"socket_id": "123.456", "channel_name": "private-encrypted-x"}, "encrypted"),
        ({"socket_id": "nope", "channel_name": "private-x"}, "socket_id"),
        ({"socket_id": "123.456", "channel_name": "private x"}, "channel names may"),
    ],
)
async def test_auth_refuses_what_it_cannot_sign(
    on: httpx.AsyncClient, relay_api_key: str, fields: dict[str, str], says: str
) -> None:
    answer = await on.post("/console/api/auth", json=fields, headers=keyed(relay_api_key))
    assert answer.status_code == 400
    assert says in answer.json()["detail"]


async def test_auth_refuses_a_user_and_the_anonymous(
    on: httpx.AsyncClient, relay_token: Callable[..., str]
) -> None:
    body = {"socket_id": "123.456", "channel_name": "private-user-alice"}
    assert (await on.post("/console/api/auth", json=body)).status_code == 401
    user = {"Authorization": f"Bearer {relay_token('alice')}"}
    assert (await on.post("/console/api/auth", json=body, headers=user)).status_code == 403


@pytest.mark.parametrize(
    ("env", "keys", "filled"),
    [
        ("development", DEV_API_KEY, DEV_API_KEY),
        ("development", "my-own-key-0123456789", None),
        ("test", DEV_API_KEY, None),
    ],
)
async def test_defaults_fill_in_only_the_published_development_key(
    relay_settings: Settings, env: str, keys: str, filled: str | None
) -> None:
    settings = Settings(
        **{**relay_settings.model_dump(), "env": env, "api_keys": keys, "console": "on"}
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        answer = await client.get("/console/api/defaults")
    assert answer.json() == {"development_key": filled}
    assert answer.headers["cache-control"] == "no-store"


def test_the_vendored_pusher_js_is_the_one_package_lock_pins() -> None:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/pusher-js"]["version"]
    vendored = STATIC / "vendor" / "pusher.min.js"
    notice = (STATIC / "vendor" / "pusher.min.js.LICENSE.txt").read_text()
    assert f"Pusher JavaScript Library v{version}" in notice
    assert "MIT" in (STATIC / "vendor" / "pusher-js.LICENCE").read_text()
    installed = ROOT / "node_modules" / "pusher-js" / "dist" / "web" / "pusher.min.js"
    assert vendored.read_bytes() == installed.read_bytes(), (
        "copy node_modules/pusher-js/dist/web/pusher.min.js (and its LICENSE.txt) to "
        "app/console/static/vendor/"
    )


def test_the_static_files_are_package_data() -> None:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["app.console"]
    package = STATIC.parent
    for name in [*FILES, "index.html"]:
        relative = (STATIC / name).relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
