"""The provider interface: what every realtime backend does for the relay, on one screen.

A provider receives only requests that already passed identity, policy and validation; it signs
client-facing answers, delivers publishes, answers queries, and verifies its own webhooks. What it
cannot do it refuses with NotSupported, which routes turn into a 501 problem.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Self

from msgspec import Struct, field

from core.errors import NotSupported

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from core.policy import Policy
    from core.principal import Principal
    from core.settings import Settings


class Limits(Struct, frozen=True):
    """A provider's limits and capabilities, as data, so routes can refuse early."""

    max_payload_bytes: int = 10_240
    max_channel_name: int = 164
    max_event_name: int = 200
    supports_encrypted_channels: bool = False
    # The variable that turns encrypted channels on, for a provider that has one: the refusal
    # of a private-encrypted- channel names it.
    encryption_key_variable: str | None = None
    # How long after a publish the provider still drops a repeat of its message ids (Ably: two
    # minutes, less its own retries). 0: it never does, so a publish whose outcome is unknown is
    # never sent again (core/idempotency.py).
    idempotent_ids_seconds: float = 0.0
    # The provider keeps each channel's history itself (Ably): the relay keeps none for it and
    # answers GET /v1/channels/{c}/messages from the provider (core/history.py).
    keeps_history: bool = False


class Message(Struct, frozen=True):
    """One event on one channel, ready for delivery."""

    channel: str
    name: str
    data: str
    socket_id: str | None = None
    id: str | None = None
    # `data` is JSON text the relay encoded from a published non-string value (an object, a list,
    # a number...), as opposed to a string published as one: SSE and history hand the first back
    # as the value and the second as a string. The Pusher protocol carries both as the string.
    json: bool = False
    # The channel history's id of this message (`<epoch>:<seq>`, core/history.py), when the
    # relay records the channel: SSE frames carry it as their id.
    history_id: str | None = None


class Receipt(Struct, frozen=True):
    """What the provider accepted for one message.

    Where two providers deliver (providers/pair.py), each receipt names its provider, and a
    mirrored message the other did not take gets a receipt saying so: `failed` is the problem
    type's slug (provider-unavailable, provider-timeout, ...)."""

    channel: str
    name: str
    id: str | None = None
    provider: str | None = None
    failed: str | None = None


class Member(Struct, frozen=True):
    """One user present on a presence channel."""

    user_id: str
    user_info: Mapping[str, Any] = field(default_factory=dict)


class Occupancy(Struct, frozen=True):
    """How busy a channel is (user_count for presence channels only)."""

    occupied: bool
    subscription_count: int | None = None
    user_count: int | None = None


class CachedEvent(Struct, frozen=True):
    """A cache channel's kept last event, and the whole seconds it is still kept."""

    event: str
    data: str
    ttl: int


class PresenceData(Struct, frozen=True):
    """The signed identity a presence subscription carries."""

    user_id: str
    user_info: Mapping[str, Any] = field(default_factory=dict)


class ChannelEvent(Struct, frozen=True):
    """A provider webhook event in the relay's own schema."""

    kind: str  # channel_occupied, channel_vacated, member_added, member_removed, client_event
    channel: str
    time_ms: int
    user_id: str | None = None
    event: str | None = None
    data: str | None = None
    socket_id: str | None = None


class Provider(ABC):
    """A realtime backend. Subclasses override what they support; the rest says NotSupported."""

    name: ClassVar[str]
    limits: Limits = Limits()

    @property
    def parts(self) -> tuple[Provider, ...]:
        """The providers that deliver for this one: itself, or a pair's two (providers/pair.py)."""
        return (self,)

    def part(self, name: str) -> Provider | None:
        """The provider named `name` among `parts`, None when it is not one of them."""
        return next((p for p in self.parts if p.name == name), None)

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build the provider, reading its own credentials; raise ConfigurationError if unusable."""

    @abstractmethod
    async def publish(self, messages: Sequence[Message]) -> list[Receipt]:
        """Deliver validated messages; raise ProviderError if the provider did not take them."""

    def authorize_channel(
        self, *, socket_id: str, channel: str, presence: PresenceData | None
    ) -> dict[str, str]:
        """The signed answer a client presents to subscribe (Pusher-style providers)."""
        raise NotSupported(f"{self.name} does not sign channel subscriptions")

    def authenticate_user(
        self, *, socket_id: str, user: PresenceData, watchlist: Sequence[str] = ()
    ) -> dict[str, str]:
        """The signed answer for a client's sign-in (pusher:signin), with the user ids whose
        online status the connection follows."""
        raise NotSupported(f"{self.name} does not sign user authentication")

    async def issue_token(
        self, principal: Principal, policy: Policy, *, channels: Sequence[str] = ()
    ) -> dict[str, Any]:
        """A client token (Ably TokenRequest, Supabase JWT) granting what the policy allows;
        `channels` names channels the client wants that a pattern alone cannot enumerate."""
        raise NotSupported(f"{self.name} does not issue client tokens")

    async def members(self, channel: str) -> list[Member]:
        """The users present on a presence channel."""
        raise NotSupported(f"{self.name} cannot list presence members")

    async def occupancy(self, channel: str) -> Occupancy:
        """Whether a channel has subscribers, and how many."""
        raise NotSupported(f"{self.name} cannot report channel occupancy")

    async def channels(self, prefix: str = "") -> dict[str, Occupancy]:
        """The occupied channels whose names start with `prefix`, with their occupancy (Pusher's
        `GET /apps/{id}/channels`)."""
        raise NotSupported(f"{self.name} cannot list its channels")

    async def last_event(self, channel: str) -> CachedEvent | None:
        """A cache channel's last event while it is kept, None when there is none (Pusher's
        `GET /apps/{id}/channels/{name}?info=cache`)."""
        raise NotSupported(f"{self.name} keeps no cache channel events")

    async def send_to_user(self, user_id: str, event: str, data: str) -> None:
        """Deliver an event to every connection signed in as the user."""
        raise NotSupported(f"{self.name} cannot send to a user")

    async def terminate_user(self, user_id: str) -> None:
        """Close every connection signed in as the user."""
        raise NotSupported(f"{self.name} cannot terminate a user's connections")

    async def history(self, channel: str, *, limit: int) -> list[Message]:
        """The most recent messages on a channel, oldest first."""
        raise NotSupported(f"{self.name} keeps no message history")

    async def check(self) -> str:
        """Make a harmless call with the provider's credentials and say who accepted them; raise
        ProviderError when they do not work. Providers that call an outside service override it."""
        raise NotSupported(f"{self.name} calls no outside service: there are no credentials to try")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ChannelEvent]:
        """Verify a webhook, then normalize its events."""
        raise NotSupported(f"{self.name} sends no webhooks")

    def drain(self) -> None:  # noqa: B027 - optional hook
        """The process is about to stop: tell connected clients to reconnect elsewhere."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work; called once when the app starts (not on Lambda)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections and stop background work."""


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Split a sequence into slices of at most `size` (the providers' per-call limits)."""
    return [items[i : i + size] for i in range(0, len(items), size)]
