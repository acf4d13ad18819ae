"""The FastAPI application: the public interface of ARCHITECTURE.md over one Relay."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__, problems
from app.middleware import AccessLog, BodyLimit
from app.origins import OriginGuard
from app.relay import Relay
from app.routes import auth, channels, events, health, users, webhooks
from core.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from core.settings import Settings


def create_app(settings: Settings | None = None, *, relay: Relay | None = None) -> FastAPI:
    """Build the app; the provider's own routes (local sockets) are mounted when it has any."""
    if relay is None:
        relay = Relay.build(settings or load_settings())
    settings = relay.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await relay.provider.start()
        try:
            yield
        finally:
            await relay.aclose()

    app = FastAPI(
        title="realtime-relay",
        version=__version__,
        summary="Authorize realtime channel subscriptions and relay publishes to a provider.",
        lifespan=lifespan,
    )
    app.state.relay = relay
    problems.install(app)
    routers = (health, auth, events, channels, users, webhooks)
    for module in routers:
        app.include_router(module.router)
    if relay.provider.name == "local":  # it serves its own sockets; imported only then
        from app.local.routes import build_router
        from providers.local.provider import LocalProvider

        assert isinstance(relay.provider, LocalProvider)
        app.include_router(build_router(relay.provider))
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        read_timeout=settings.request_read_timeout_seconds,
    )
    app.add_middleware(OriginGuard, origins=settings.origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key", "Idempotency-Key"],
        expose_headers=["Retry-After", "Idempotent-Replayed"],
        max_age=600,
    )
    app.add_middleware(AccessLog)
    return app
