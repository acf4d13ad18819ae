"""The services one relay instance is made of, built once and shared by every route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection  # noqa: TC002 - FastAPI resolves it at runtime

from app.identity import Authenticator
from app.policy import Policy
from app.publishing import Publisher
from providers.registry import create_provider

if TYPE_CHECKING:
    from app.principal import Principal
    from app.settings import Settings
    from providers.base import Provider


@dataclass(slots=True)
class Relay:
    """Settings, the three gates and the provider."""

    settings: Settings
    authenticator: Authenticator
    policy: Policy
    provider: Provider
    publisher: Publisher

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        provider: Provider | None = None,
        policy: Policy | None = None,
        authenticator: Authenticator | None = None,
    ) -> Relay:
        """Build from settings; tests inject any part."""
        if policy is None:
            policy = (
                Policy.from_file(settings.policy_file) if settings.policy_file else Policy.default()
            )
        provider = provider or create_provider(settings)
        return cls(
            settings=settings,
            authenticator=authenticator or Authenticator(settings),
            policy=policy,
            provider=provider,
            publisher=Publisher(settings, policy, provider),
        )

    async def identify(self, conn: HTTPConnection) -> Principal:
        """Who is calling: bearer header, X-API-Key header, or a `token` query parameter."""
        return await self.authenticator.authenticate(
            authorization=conn.headers.get("authorization"),
            api_key=conn.headers.get("x-api-key"),
            token=conn.query_params.get("token"),
        )

    async def aclose(self) -> None:
        """Release the provider's and the authenticator's connections."""
        await self.provider.aclose()
        await self.authenticator.aclose()


async def get_relay(conn: HTTPConnection) -> Relay:
    """FastAPI dependency: the relay of the running app (async: no thread-pool hop per request)."""
    relay: Relay = conn.app.state.relay
    return relay
