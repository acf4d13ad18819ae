"""Liveness."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app import __version__
from app.relay import Relay, get_relay

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The relay is up, with this provider and version."""

    status: str
    provider: str
    version: str


@router.get("/health", summary="Liveness, provider name and version")
async def health(relay: Annotated[Relay, Depends(get_relay)]) -> Health:
    """Answer without touching the provider (a readiness check is `relay check`)."""
    return Health(status="ok", provider=relay.provider.name, version=__version__)
