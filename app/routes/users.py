"""Backend-only actions on one user's connections: send to the user, terminate them."""

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.convertors import Convertor, register_url_convertor

from app.relay import relay_of
from app.routes.events import FiniteJsonRoute


class _AnyText(Convertor[str]):
    """A path parameter of any characters, `/` and line breaks included (`:path` takes no line
    break): a user id is any `sub` sign-in accepts, and validate_user_id, not a 404, refuses."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("user_id", _AnyText())
router = APIRouter(prefix="/v1/users", tags=["users"], route_class=FiniteJsonRoute)


class UserEvent(BaseModel):
    """An event for every connection signed in as the user."""

    model_config = ConfigDict(extra="forbid")

    name: str
    data: Any


class Done(BaseModel):
    """The provider accepted the request."""

    provider: str
    user_id: str


# Clients percent-encode the id (`auth0%7C123`, `/` as %2F); the server decodes it once.
@router.post("/{user_id:user_id}/events", summary="Send an event to one user's connections")
async def send_to_user(user_id: str, event: UserEvent, request: Request) -> Done:
    """Deliver to the connections that signed in (pusher:signin) as the user."""
    relay = relay_of(request)
    principal = await relay.identify(request)
    await relay.authorizer.send_to_user(
        principal, user_id, name=event.name, data=event.data, client_ip=relay.client_ip(request)
    )
    return Done(provider=relay.provider_label, user_id=user_id)


@router.post("/{user_id:user_id}/terminate", summary="Close every connection of one user")
async def terminate_user(user_id: str, request: Request) -> Done:
    """Disconnect the user's signed-in connections; pusher-js does not reconnect them."""
    relay = relay_of(request)
    principal = await relay.identify(request)
    await relay.authorizer.terminate_user(principal, user_id, client_ip=relay.client_ip(request))
    return Done(provider=relay.provider_label, user_id=user_id)
