"""The services one relay instance is made of, built once and shared by every route: the
authorizing and publishing services (core) over one provider, and identity from HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec import Struct

from app.clientaddr import ClientAddress
from core.authorizing import Authorizer
from core.breaker import CircuitBreaker
from core.errors import InvalidToken
from core.history import ChannelHistory
from core.idempotency import Idempotency
from core.identity import Authenticator
from core.policy import Policy
from core.publishing import Publisher
from core.ratelimit import RateLimiter
from core.schemas import EventSchemas
from core.stores import create_store
from providers.pair import ProviderPair
from providers.registry import create_provider

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from core.principal import Principal
    from core.provider import Provider
    from core.settings import Settings
    from core.stores import Store


class Relay(Struct):
    """Settings, the gates, the shared store and the provider."""

    settings: Settings
    authenticator: Authenticator
    policy: Policy
    provider: Provider
    store: Store
    limiter: RateLimiter
    schemas: EventSchemas
    authorizer: Authorizer
    publisher: Publisher
    breaker: CircuitBreaker
    history: ChannelHistory
    addresses: ClientAddress | None = None  # built on first use from the settings

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        provider: Provider | None = None,
        policy: Policy | None = None,
        authenticator: Authenticator | None = None,
        store: Store | None = None,
    ) -> Relay:
        """Build from settings; tests inject any part."""
        if policy is None:
            policy = (
                Policy.from_file(settings.policy_file) if settings.policy_file else Policy.default()
            )
        provider = provider or create_provider(settings)
        store = store or create_store(settings)
        limiter = RateLimiter(settings, store, policy)
        schemas = EventSchemas(policy)
        # One breaker per provider: publishes, channel queries and user events all call it.
        breaker = CircuitBreaker(
            failures=settings.breaker_failures, cooldown=settings.breaker_cooldown_seconds
        )
        history = ChannelHistory(settings, policy, store, provider.limits)
        authorizer = Authorizer(
            settings, policy, provider, limiter=limiter, breaker=breaker, history=history
        )
        publisher = Publisher(
            settings,
            policy,
            provider,
            schemas=schemas,
            limiter=limiter,
            idempotency=Idempotency(
                store,
                ttl=settings.idempotency_ttl_seconds,
                wait=settings.idempotency_wait_seconds,
                per_caller=settings.idempotency_keys_per_caller,
            ),
            breaker=breaker,
            history=history,
        )
        return cls(
            settings=settings,
            authenticator=authenticator or Authenticator(settings),
            policy=policy,
            provider=provider,
            store=store,
            limiter=limiter,
            schemas=schemas,
            authorizer=authorizer,
            publisher=publisher,
            breaker=breaker,
            history=history,
        )

    async def identify(self, conn: HTTPConnection, *, query_token: bool = False) -> Principal:
        """Who is calling: bearer header, X-API-Key header, or (`query_token`) `?token=`.

        Only a route a browser cannot send headers to (EventSource) takes `?token=`; anywhere
        else it is refused, not ignored: ignoring it would turn the caller into anonymous."""
        tokens = conn.query_params.getlist("token") if conn.scope.get("query_string") else []
        if tokens and not query_token:
            raise InvalidToken("send the token in the Authorization header, not in ?token=")
        authorization: list[str] = []
        api_key: list[str] = []
        for name, value in conn.scope["headers"]:  # one pass; servers give names in lower case
            if name == b"authorization":
                authorization.append(value.decode("latin-1"))
            elif name == b"x-api-key":
                api_key.append(value.decode("latin-1"))
        try:
            return await self.authenticator.authenticate(
                authorization=_single(authorization),
                api_key=_single(api_key),
                token=_single(tokens),
            )
        except InvalidToken:
            await self.limiter.failed_credential(self.client_ip(conn))
            raise

    def client_ip(self, conn: HTTPConnection) -> str | None:
        """The caller's address: the peer, the right-most untrusted X-Forwarded-For hop behind
        configured proxies, or API Gateway's `sourceIp` on Lambda (app/clientaddr.py)."""
        if self.addresses is None:
            self.addresses = ClientAddress(
                trust_proxy_headers=self.settings.trust_proxy_headers,
                trusted_proxies=self.settings.trusted_proxies,
            )
        return self.addresses.of(conn)

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each provider's circuit breaker by provider name: the relay's one, or a pair's two
        (RELAY_SECONDARY_PROVIDER, whose calls each go through their own provider's)."""
        if isinstance(self.provider, ProviderPair):
            return dict(self.provider.breakers)
        return {self.provider.name: self.breaker}

    @property
    def provider_label(self) -> str:
        """The provider's name in answers and logs: `pusher`, or a pair's `pusher+local`."""
        if isinstance(self.provider, ProviderPair):
            return self.provider.label
        return self.provider.name

    async def aclose(self) -> None:
        """Release the provider's, the store's and the authenticator's connections."""
        await self.provider.aclose()
        await self.store.aclose()
        await self.authenticator.aclose()


def _single(values: list[str]) -> str | None:
    """The one value of a credential header or parameter; two are ambiguous, so refused."""
    if len(values) > 1:
        raise InvalidToken("more than one credential presented")
    return values[0] if values else None


def relay_of(conn: HTTPConnection) -> Relay:
    """The relay of the app serving this request or socket.

    Routes call this rather than declaring a FastAPI dependency: solving even a one-line
    dependency on every request was about 18% of an auth request's CPU (bench/README.md)."""
    relay: Relay = conn.app.state.relay
    return relay
