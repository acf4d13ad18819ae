"""The console (/console) in headless Chromium, against `relay serve`: Python Playwright driving
Debian's chromium (`make test` installs it; Playwright downloads no browser of its own).

What a user sees: the page loads with no console error, an event published over the REST API
appears in its log, a pusher-js client joining a presence channel appears in its members, the
connection status follows a relay restart on the same port, and RELAY_ALLOWED_ORIGINS is obeyed.

RELAY_CONSOLE_SCREENSHOT=docs/console.png also saves the members test's screenshot there (the
README's picture).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright

from core.settings import Settings
from core.tokens import mint_dev_token
from tests.e2e import harness
from tests.e2e.conftest import API_KEY, APP_KEY, JWT_SECRET, RELAY_ENV
from tests.e2e.harness import PusherAgent, RelayProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# A short drain: a restart here is about the page reconnecting, not about the handover.
ENV = {**RELAY_ENV, "RELAY_CONSOLE": "on", "RELAY_RATE_LIMITS": "false", "RELAY_DRAIN_SECONDS": "1"}
SCREENSHOT_TO = os.environ.get("RELAY_CONSOLE_SCREENSHOT")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium, for the module."""
    assert CHROMIUM.exists(), "install chromium (apt-get install chromium; make test does it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def console_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """`relay serve` with the console on, outside development (so its API needs the key)."""
    process = RelayProcess(ENV, tmp_path_factory.mktemp("console") / "relay.log")
    yield process
    process.stop()


class Console:
    """One page of the console, with what its browser reported."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def open(self, *, key: str = API_KEY) -> None:
        """Load the page and enter the backend key."""
        self.page.goto(self.base + "/console")
        self.page.fill("#key", key)
        self.page.click("#key-form button[type=submit]")

    def status(self) -> Any:
        """The connection status badge."""
        return self.page.locator("#status")

    def watch(self, channel: str) -> None:
        """Watch a channel and wait for its subscription."""
        self.page.fill("#watch-channel", channel)
        self.page.click("#watch-form button[type=submit]")
        chip = self.page.locator(f'#watched li[data-channel="{channel}"]')
        expect(chip).to_have_attribute("data-state", "subscribed")

    def logged(self, channel: str, event: str) -> Any:
        """The log entries of one event on one channel."""
        return self.page.locator(f'#log li[data-channel="{channel}"][data-event="{event}"]')


@pytest.fixture
def console(browser: Browser, console_relay: RelayProcess) -> Iterator[Console]:
    """A fresh page (its own sessionStorage) on the console relay."""
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    yield Console(context.new_page(), console_relay.base)
    context.close()


def publish(relay: RelayProcess, channel: str, name: str, data: Any) -> None:
    """POST /v1/events with the backend key, as a backend would."""
    body = {"name": name, "channel": channel, "data": data}
    answer = httpx.post(relay.base + "/v1/events", json=body, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 200, answer.text


def token(user_id: str, name: str) -> str:
    """A user JWT the e2e relays accept."""
    settings = Settings(jwt_secret=JWT_SECRET, api_keys=API_KEY)
    return mint_dev_token(settings, user_id=user_id, name=name)


def test_the_page_loads_connects_and_logs_a_published_event(
    console: Console, console_relay: RelayProcess
) -> None:
    console.open()
    expect(console.status()).to_have_attribute("data-state", "connected")
    console.watch("news")
    publish(console_relay, "news", "headline", {"text": "héllo <b>"})
    entry = console.logged("news", "headline")
    expect(entry).to_have_count(1)
    expect(entry.locator("code")).to_have_text('{"text":"héllo <b>"}')  # text, not markup
    row = console.page.locator('#channels tr[data-channel="news"]')
    expect(row.locator("td").nth(1)).to_have_text("1")  # the console's own subscription
    # The key went nowhere but the headers: not in the URL, not in a cookie.
    assert API_KEY not in console.page.url
    assert console.page.context.cookies() == []
    assert console.errors == []


def test_the_publish_form_publishes_with_the_key(
    console: Console, console_relay: RelayProcess
) -> None:
    console.open()
    console.watch("scores")
    console.page.fill("#publish-channel", "scores")
    console.page.fill("#publish-event", "goal")
    console.page.fill("#publish-data", '{"home": 2}')
    console.page.click("#publish-form button[type=submit]")
    expect(console.logged("scores", "goal").locator("code")).to_have_text('{"home":2}')
    expect(console.page.locator("#publish-result")).to_contain_text("1 accepted")
    assert console.errors == []


def test_a_wrong_key_is_refused_and_nothing_connects(console: Console) -> None:
    console.open(key="not-a-key-of-this-relay")
    expect(console.page.locator("#notice")).to_contain_text("refused this key")
    expect(console.status()).to_have_attribute("data-state", "initialized")
    # The refused key is not kept: a reload asks again.
    console.page.reload()
    expect(console.page.locator("#notice")).to_contain_text("Enter a backend key")
    # Chromium reports the 401 answer itself as a console error; nothing else may appear.
    assert all("401" in e for e in console.errors), console.errors


def test_a_presence_member_joining_appears_in_the_members(
    console: Console, console_relay: RelayProcess, tmp_path: Path
) -> None:
    console.open()
    expect(console.status()).to_have_attribute("data-state", "connected")
    console.page.fill("#members-channel", "presence-lobby")
    console.page.click("#members-form button[type=submit]")
    clients = PusherAgent(console_relay, APP_KEY)
    try:
        for user, name in (("ann", "Ann"), ("ben", "Ben")):
            clients.connect(user, token(user, name))
            assert clients.subscribe(user, "presence-lobby")["type"] == "subscribed"
        members = console.page.locator("#members li")
        expect(members).to_have_count(2)
        expect(console.page.locator('#members li[data-user="ann"]')).to_contain_text('"Ann"')
        row = console.page.locator('#channels tr[data-channel="presence-lobby"]')
        expect(row.locator("td").nth(2)).to_have_text("2")
        # Watching the channel joins it as the console's member; the others see it arrive.
        console.watch("presence-lobby")
        clients.expect(lambda o: o["type"] == "member_added" and o["id"] == "relay-console")
        expect(members).to_have_count(3)
        console.watch("news")
        publish(console_relay, "presence-lobby", "typing", {"user": "ann"})
        publish(console_relay, "news", "headline", {"text": "the console is live"})
        expect(console.logged("news", "headline")).to_have_count(1)
        clients.send(op="disconnect", client="ben")
        expect(console.logged("presence-lobby", "member_removed")).to_contain_text("ben left")
        expect(members).to_have_count(2)
        expect(console.page.locator('#members li[data-user="relay-console"]')).to_contain_text(
            "(this console)"
        )
        # A channel's row fills the forms with its name.
        console.page.click('#channels tr[data-channel="news"]')
        expect(console.page.locator("#publish-channel")).to_have_value("news")
        console.page.fill("#publish-event", "headline")
        picture = tmp_path / "console.png"
        console.page.screenshot(path=str(picture), full_page=True)
        assert picture.read_bytes().startswith(b"\x89PNG")
        if SCREENSHOT_TO:
            shutil.copyfile(picture, SCREENSHOT_TO)
    finally:
        clients.close()
    assert console.errors == []


def test_the_status_follows_a_relay_restart(browser: Browser, tmp_path: Path) -> None:
    relay = RelayProcess(ENV, tmp_path / "first.log")
    page = browser.new_page()
    try:
        console = Console(page, relay.base)
        console.open()
        status = console.status()
        expect(status).to_have_attribute("data-state", "connected")
        console.watch("news")
        relay.stop()
        expect(status).not_to_have_attribute("data-state", "connected")
        down = time.monotonic()
        relay = _on_port(relay.port, ENV, tmp_path / "second.log")
        up = time.monotonic()
        # pusher-js retries by itself; the page subscribes again to what it watched.
        expect(status).to_have_attribute("data-state", "connected", timeout=30_000)
        back = time.monotonic()
        expect(console.logged("news", "subscription_succeeded")).to_have_count(2)
        publish(relay, "news", "after-restart", 1)
        expect(console.logged("news", "after-restart")).to_have_count(1)
        print(f"relay down for {up - down:.1f} s; the page connected {back - up:.1f} s after")
    finally:
        page.close()
        relay.stop()


@pytest.mark.parametrize("allowed", ["https://app.example.com", "{console}"])
def test_the_socket_follows_relay_allowed_origins(
    browser: Browser, tmp_path: Path, allowed: str
) -> None:
    port = harness.free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {**ENV, "RELAY_ALLOWED_ORIGINS": allowed.format(console=origin)}
    relay = _on_port(port, env, tmp_path / "relay.log")
    page = browser.new_page()
    try:
        console = Console(page, relay.base)
        console.open()
        # The API is not origin-guarded (it takes a key, never a cookie): the channels load.
        expect(console.page.locator("#channels-count")).to_have_text("(0)")
        if allowed == "{console}":
            expect(console.status()).to_have_attribute("data-state", "connected")
            console.watch("news")
            publish(relay, "news", "headline", 1)
            expect(console.logged("news", "headline")).to_have_count(1)
        else:  # the page says why, rather than retrying a socket the relay refuses
            expect(console.page.locator("#notice")).to_contain_text(
                f"origin ({origin}) is not in RELAY_ALLOWED_ORIGINS"
            )
            expect(console.status()).to_have_attribute("data-state", "failed")
        assert console.errors == []
    finally:
        page.close()
        relay.stop()


def _on_port(port: int, env: dict[str, str], log: Path) -> RelayProcess:
    """`relay serve` on a port chosen beforehand (a restart, or an origin that names it)."""
    chosen = harness.free_port
    harness.free_port = lambda: port
    try:
        return RelayProcess(env, log)
    finally:
        harness.free_port = chosen


def test_without_relay_console_outside_development_there_is_no_page(
    relay: RelayProcess,
) -> None:
    assert httpx.get(relay.base + "/console").status_code == 404
    assert httpx.get(relay.base + "/console/static/console.js").status_code == 404
