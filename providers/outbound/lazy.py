"""A provider's HTTP client, built on its first use: the one place the relay defers one.

The module that defines a client imports httpx (about 50 ms of a Lambda cold start, more where
`rich` is installed: httpx then loads its command line too). Signing subscriptions and minting
tokens never call the provider, so a cold start that serves them should not pay for it: each
provider holds its client in a `Lazy` whose `build` imports the client's module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from core.errors import ProviderUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

SHUTTING_DOWN = "the relay is shutting down"


class Closable(Protocol):
    """What a client must offer: release its connections."""

    async def aclose(self) -> None:
        """Close the pool."""


ClientT = TypeVar("ClientT", bound=Closable)


class Lazy(Generic[ClientT]):
    """Build once on first use; after `aclose`, refuse instead of building a new one."""

    def __init__(self, build: Callable[[], ClientT], *, ready: ClientT | None = None) -> None:
        self._build = build
        self._client = ready
        self._closed = False

    def get(self) -> ClientT:
        """The client, built now if this is the first use."""
        if self._closed:
            raise ProviderUnavailable(SHUTTING_DOWN)
        if self._client is None:
            self._client = self._build()
        return self._client

    async def aclose(self) -> None:
        """Close the client if it was built; later uses are refused."""
        self._closed = True
        if self._client is not None:
            await self._client.aclose()
