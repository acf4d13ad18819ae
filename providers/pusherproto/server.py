"""What a provider that is itself the Pusher-protocol server (local, apigateway) signs with: the
relay's own app key and secret, `RELAY_APP_KEY` and `RELAY_APP_SECRET`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.pusherproto import answers

if TYPE_CHECKING:
    from core.provider import PresenceData
    from core.settings import Settings


class RelaySigned:
    """Channel and user auth answers signed with the relay's own app credentials (a mixin)."""

    settings: Settings

    @property
    def app_secret(self) -> str:
        """The secret that signs subscriptions for this app."""
        return self.settings.app_secret.get_secret_value()

    def authorize_channel(
        self, *, socket_id: str, channel: str, presence: PresenceData | None
    ) -> dict[str, str]:
        """Pusher's channel auth (`key:HMAC`), plus channel_data for presence."""
        return answers.channel_answer(
            self.settings.app_key,
            self.app_secret,
            socket_id=socket_id,
            channel=channel,
            presence=presence,
        )

    def authenticate_user(self, *, socket_id: str, user: PresenceData) -> dict[str, str]:
        """Pusher's user auth for pusher:signin."""
        return answers.user_answer(
            self.settings.app_key, self.app_secret, socket_id=socket_id, user=user
        )
