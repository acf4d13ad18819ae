"""A webhook receiver for the tests: a small app, served in the test's process (tests/servers.py),
that verifies every request as an application's backend would, with the official Python Pusher
SDK's `validate_webhook` or with `standardwebhooks`, and records what it got."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import pusher
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.servers import serve

if TYPE_CHECKING:
    from starlette.requests import Request

# Public test values and secrets (tests/conftest.py lists the secrets for the log scanner).
APP_ID, APP_KEY = "4242", "unit-key"
APP_SECRET = "unit-app-secret-0123456789"  # the unit settings' RELAY_APP_SECRET
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """What the backend got: the verified bodies in order, and the refused requests."""

    def __init__(
        self, *, fmt: str = "pusher", app_key: str = APP_KEY, app_secret: str = APP_SECRET
    ) -> None:
        self.format = fmt
        self.pusher = pusher.Pusher(app_id=APP_ID, key=app_key, secret=app_secret)
        self.bodies: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.ids: list[str] = []
        self.failures: list[int] = []  # statuses to answer first, one per request
        self.requests = 0
        self.arrived = asyncio.Event()
        self.app = Starlette(routes=[Route("/hooks", self._receive, methods=["POST"])])

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every verified event, in the order received."""
        return [e for body in self.bodies for e in body["events"]]

    def kinds(self) -> list[tuple[str, str, str | None]]:
        """(name, channel, user_id) of every event."""
        return [(e["name"], e["channel"], e.get("user_id")) for e in self.events]

    async def wait_for(self, count: int, *, within: float = 10.0) -> list[dict[str, Any]]:
        """Wait until `count` events arrived."""
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events

    def wait_sync(self, count: int, *, within: float = 10.0) -> list[dict[str, Any]]:
        """Wait until `count` events arrived, from a thread that runs no loop."""
        deadline = time.monotonic() + within
        while len(self.events) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.events)} of {count} events arrived")
            time.sleep(0.02)
        return self.events

    async def _receive(self, request: Request) -> PlainTextResponse:
        self.requests += 1
        if self.failures:
            return PlainTextResponse("scripted failure", status_code=self.failures.pop(0))
        body = await request.body()
        try:
            if self.format == "standard":
                data = Webhook(WEBHOOK_SECRET).verify(body, dict(request.headers))
                self.ids.append(request.headers["webhook-id"])
                verified = data["data"]
            else:
                verified = self.pusher.validate_webhook(
                    request.headers.get("X-Pusher-Key", ""),
                    request.headers.get("X-Pusher-Signature", ""),
                    body.decode(),
                )
        except WebhookVerificationError as exc:
            verified = None
            self.refused.append(str(exc))
        if verified is None:
            self.refused.append("refused")
            return PlainTextResponse("invalid signature", status_code=401)
        self.bodies.append(verified)
        self.arrived.set()
        return PlainTextResponse("ok")


class ReceiverThread:
    """The receiver served on its own loop in a thread, for synchronous callers (the Lambda
    handlers run their own loop); entering gives its URL."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._served: Any = None

    def __enter__(self) -> str:
        self._thread.start()
        self._served = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        if not self._ready.wait(5):
            raise RuntimeError("the webhook receiver did not start")
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._served.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self.receiver.app) as server:
            self.url = f"{server.http_url}/hooks"
            self._ready.set()
            await self._stop.wait()
