"""Channel queries: occupancy, presence members and message history (core.authorizing runs
their gates and calls the provider through the circuit breaker)."""

from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from app.relay import relay_of

if TYPE_CHECKING:
    from core.provider import Message

router = APIRouter(prefix="/v1/channels", tags=["channels"])


class MemberOut(BaseModel):
    """One user present on the channel."""

    user_id: str
    user_info: dict[str, Any]


class Members(BaseModel):
    """The users present on a presence channel."""

    channel: str
    count: int
    members: list[MemberOut]


class MessageOut(BaseModel):
    """One remembered message: `data` as published, a JSON value or a string."""

    id: str | None
    name: str
    data: Any


class History(BaseModel):
    """Messages of a channel, oldest first; `next`, when more followed, is the `since=` to ask
    for them."""

    channel: str
    messages: list[MessageOut]
    next: str | None = None


class ChannelInfo(BaseModel):
    """Whether a channel has subscribers, and how many (where the provider can tell)."""

    channel: str
    occupied: bool
    subscription_count: int | None
    user_count: int | None


@router.get("/{channel}", summary="Channel occupancy")
async def occupancy(channel: str, request: Request) -> ChannelInfo:
    """Backends, and callers the policy lets subscribe, may ask how busy a channel is."""
    relay = relay_of(request)
    principal = await relay.identify(request)
    found = await relay.authorizer.occupancy(principal, channel, client_ip=relay.client_ip(request))
    return ChannelInfo(
        channel=channel,
        occupied=found.occupied,
        subscription_count=found.subscription_count,
        user_count=found.user_count,
    )


@router.get("/{channel}/members", summary="Presence members of a channel")
async def members(channel: str, request: Request) -> Members:
    """Backends, and users the policy lets subscribe, may list a presence channel's members."""
    relay = relay_of(request)
    principal = await relay.identify(request)
    found = await relay.authorizer.members(principal, channel, client_ip=relay.client_ip(request))
    return Members(
        channel=channel,
        count=len(found),
        members=[MemberOut(user_id=m.user_id, user_info=dict(m.user_info)) for m in found],
    )


@router.get("/{channel}/messages", summary="Recent messages of a channel, or those since an id")
async def messages(
    channel: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    since: Annotated[str | None, Query(max_length=64)] = None,
) -> History:
    """History, where the channel's policy grants it (backends always may read it). With
    `since=<id>`: what followed that id, or 410 history-gap when the history cannot say
    (docs/recovery.md). Encrypted channels keep none: 501 encrypted-channel-history."""
    relay = relay_of(request)
    principal = await relay.identify(request)
    found = await relay.authorizer.history(
        principal, channel, limit=limit, since=since, client_ip=relay.client_ip(request)
    )
    return History(
        channel=channel,
        messages=[MessageOut(id=m.id, name=m.name, data=_published(m)) for m in found.messages],
        next=found.next,
    )


def _published(message: "Message") -> Any:
    """The data as it was published: JSON the relay encoded decoded back, a string as it is."""
    return orjson.loads(message.data) if message.json else message.data
