"""Liveness."""

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app import __version__
from app.relay import relay_of

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The relay is up, with this provider and version."""

    status: str
    provider: str
    version: str
    # The provider's circuit breaker in this process: closed, open (publishes and queries get
    # 503 without calling it) or half-open (the next call probes it).
    circuit: str


@router.get("/health", summary="Liveness, provider name and version")
async def health(request: Request) -> Health:
    """Answer without touching the provider (a readiness check is `relay check`)."""
    relay = relay_of(request)
    return Health(
        status="ok",
        provider=relay.provider.name,
        version=__version__,
        circuit=relay.breaker.state,
    )
