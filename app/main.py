"""The FastAPI application: the public interface of ARCHITECTURE.md over one Relay."""

from __future__ import annotations

from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

from fastapi import FastAPI

from app import __version__, docs, problems
from app import webhooks as webhooks_sink
from app.middleware import Front
from app.pusher_http import build_pusher_http_router
from app.relay import Relay
from app.routes import auth, channels, events, health, users, webhooks
from core.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import Receive, Scope, Send

    from app.emf import EmfMetrics
    from app.metrics import Metrics
    from core.settings import Settings


# The providers that are their own Pusher server: they answer Pusher's HTTP API themselves.
PUSHER_SERVERS = frozenset({"local", "apigateway"})


class RelayApp(FastAPI):
    """FastAPI behind the relay's one middleware layer: every call enters `front` first."""

    front: Front

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Front, which hands on to FastAPI what it does not answer itself."""
        await self.front(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    relay: Relay | None = None,
    metrics: bool = False,
    emf: bool = False,
) -> RelayApp:
    """Build the app; the provider's own routes (local sockets) are mounted when it has any;
    `metrics` (relay serve with RELAY_METRICS on) measures it and serves `GET /metrics`, `emf`
    (Lambda) measures it for CloudWatch's embedded metric format (app/emf.py)."""
    if relay is None:
        relay = Relay.build(settings or load_settings())
    settings = relay.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await relay.provider.start()
        hooks = await webhooks_sink.start(relay.settings)  # None unless RELAY_WEBHOOK_URL
        if measured is not None:
            measured.start()
        try:
            yield
        finally:
            if measured is not None:
                await measured.stop()
            await webhooks_sink.stop(hooks)
            await relay.aclose()

    app = RelayApp(
        title="realtime-relay",
        version=__version__,
        summary="Authorize realtime channel subscriptions and relay publishes to a provider.",
        lifespan=lifespan,
        docs_url=None,  # app/docs.py serves it from local files
        redoc_url=None,  # ReDoc loads only from a CDN
    )
    app.state.relay = relay
    app.state.metrics = None
    measured: Metrics | EmfMetrics | None = None
    if metrics:  # prometheus-client is imported only then
        from app import metrics as measuring

        measured = measuring.install(app, relay)
    elif emf:
        from app import emf as embedded

        measured = embedded.install(app, relay)
    problems.install(app)
    docs.install(app)
    direct = dict(auth.direct.endpoints)  # served by Front, below FastAPI's routing
    routers = (health, auth, events, channels, users, webhooks)
    for module in routers:
        app.include_router(module.router)
    if PUSHER_SERVERS.intersection(settings.providers):  # the Pusher HTTP API, as SDKs call it
        pusher_http = build_pusher_http_router(settings)
        app.include_router(pusher_http.router)
        direct.update(pusher_http.direct)
    local = relay.provider.part("local")
    if local is not None:  # it serves its own sockets; imported only then
        from app import console
        from app.local.routes import build_router
        from providers.local.provider import LocalProvider

        assert isinstance(local, LocalProvider)
        app.include_router(build_router(local))
        if console.enabled(settings):  # /console: in development, or with RELAY_CONSOLE=on
            from app.console.routes import router as console_router

            app.include_router(console_router)
    docs.list_only_served(app, relay.provider)
    # One layer instead of FastAPI middleware (each a wrapper with its own wrapped `send`), and
    # the auth endpoints served from it: bench/README.md, "Auth".
    app.front = Front(
        partial(FastAPI.__call__, app),
        settings=settings,
        host=app,
        direct=direct,
        measure=None if measured is None else measured.observe,
    )
    return app
