"""What a provider that is itself the Pusher-protocol server (local, apigateway) signs with: the
relay's own app key and secret, `RELAY_APP_KEY` and `RELAY_APP_SECRET`; and what its protocol
sessions decide by."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec import structs

from core.validation import ChannelKind, channel_kind
from providers.pusherproto import answers, encryption
from providers.pusherproto.config import CLIENT_EVENTS_PER_SECOND, SessionConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.policy import Policy
    from core.provider import Limits, Message, PresenceData
    from core.schemas import EventSchemas
    from core.settings import Settings
    from providers.pusherproto.config import SubscriptionGate

ENCRYPTION_KEY_VARIABLE = "RELAY_ENCRYPTION_MASTER_KEY_BASE64"


def relay_limits(limits: Limits, settings: Settings) -> Limits:
    """`limits` with encrypted channels on when the relay has an encryption master key, and
    their refusal naming the variable to set when it has none."""
    return structs.replace(
        limits,
        supports_encrypted_channels=settings.encryption_master_key_base64 is not None,
        encryption_key_variable=ENCRYPTION_KEY_VARIABLE,
    )


class RelaySigned:
    """Channel and user auth answers signed with the relay's own app credentials, and the
    protocol sessions that check them (a mixin)."""

    settings: Settings
    limits: Limits

    @property
    def client_events_per_second(self) -> int:
        """Client events one connection may send per second (Pusher's limit)."""
        return CLIENT_EVENTS_PER_SECOND

    def session_config(
        self, gate: SubscriptionGate, policy: Policy, schemas: EventSchemas | None = None
    ) -> SessionConfig:
        """What this server's Pusher protocol sessions decide by: `gate` is the authorizing
        service (public subscriptions), `policy` and `schemas` check client events."""
        settings = self.settings
        return SessionConfig(
            app_key=settings.app_key,
            app_secret=self.app_secret,
            limits=self.limits,
            gate=gate,
            policy=policy,
            schemas=schemas,
            max_subscriptions=settings.max_subscriptions_per_connection,
            max_invalid_frames=settings.max_invalid_frames,
            client_events_per_second=self.client_events_per_second,
            subscription_counts=settings.subscription_count_events,
        )

    @property
    def app_secret(self) -> str:
        """The secret that signs subscriptions for this app."""
        return self.settings.app_secret.get_secret_value()

    def authorize_channel(
        self, *, socket_id: str, channel: str, presence: PresenceData | None
    ) -> dict[str, str]:
        """Pusher's channel auth (`key:HMAC`), plus channel_data for presence and the channel's
        shared_secret for an encrypted channel."""
        secret = None
        master_key = self.settings.encryption_master_key
        if master_key is not None and channel_kind(channel) is ChannelKind.PRIVATE_ENCRYPTED:
            secret = encryption.shared_secret(channel, master_key)
        return answers.channel_answer(
            self.settings.app_key,
            self.app_secret,
            socket_id=socket_id,
            channel=channel,
            presence=presence,
            shared_secret=secret,
        )

    def seal(self, messages: Sequence[Message]) -> Sequence[Message]:
        """The messages with those on encrypted channels sealed (encryption.seal), with the
        relay's own master key."""
        return encryption.seal(messages, self.settings.encryption_master_key, self.limits)

    def authenticate_user(
        self, *, socket_id: str, user: PresenceData, watchlist: Sequence[str] = ()
    ) -> dict[str, str]:
        """Pusher's user auth for pusher:signin."""
        return answers.user_answer(
            self.settings.app_key,
            self.app_secret,
            socket_id=socket_id,
            user=user,
            watchlist=watchlist,
        )
