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
    # With RELAY_SECONDARY_PROVIDER: the second provider, the mode (mirror or failover), and
    # each provider's own circuit breaker.
    secondary: str | None = None
    mode: str | None = None
    circuits: dict[str, str] | None = None


@router.get(
    "/health", summary="Liveness, provider name and version", response_model_exclude_unset=True
)
async def health(request: Request) -> Health:
    """Answer without touching the provider (a readiness check is `relay check`)."""
    relay = relay_of(request)
    settings = relay.settings
    health = Health(
        status="ok",
        provider=settings.provider,
        version=__version__,
        circuit=relay.breaker.state,
    )
    if settings.secondary_provider is not None:
        health.secondary = settings.secondary_provider
        health.mode = settings.secondary_mode
        health.circuits = {name: b.state for name, b in relay.breakers.items()}
    return health
