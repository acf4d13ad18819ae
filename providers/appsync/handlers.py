"""The channel namespace's onSubscribe and onPublish, through a Lambda data source (DIRECT).

The event and answers, as Powertools for AWS Lambda's AppSyncEventsResolver documents them
(https://docs.powertools.aws.dev/lambda/python/latest/core/event_handler/appsync_events/):

    event        {"identity", "request": {"headers", "domainName"}, "info": {"channel": {"path",
                  "segments"}, "channelNamespace": {"name"}, "operation": SUBSCRIBE | PUBLISH},
                  "events": [{"id", "payload"}] (PUBLISH)}
    subscribe    null to allow; the Lambda failing with an `UnauthorizedException` refuses (403)
    publish      {"events": [{"id", "payload"} | {"id", "error"}]}: each event passed on or
                 refused; the same exception refuses the whole publish

These decide every subscribe and publish, whichever auth mode admitted it and whatever the
authorizer's cache said: the same gates as every other provider, in their order, and the only
place a subscribe or a client's publish is counted against the rate limit (the authorizer asks
the policy alone). A subscribe is one `auth` request (core.authorizing). A client's publish
costs one `publish` token per event, against the caller's budget and the channel's rule's, as a
publish through the REST API does (core.publishing); over it, every event is refused with the
limit's reason, since a 403 would say the caller may not publish at all. The relay's own
publishes (IAM, or the relay's API key) were counted when the REST API took them. A client's
publish must be the relay's event shape, `{"event": "client-...", "data": ...}`, its data within
the size limit and its event's schema: a client writes only what a Pusher client event may carry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.access import allowed
from core.errors import InvalidPayload, RateLimited, RelayError
from core.validation import check_payload_size, encode_data, validate_event_name
from providers.appsync import channels
from providers.appsync.authorizer import decide_publish
from providers.appsync.identity import principal_of

if TYPE_CHECKING:
    from core.authorizing import Authorizer
    from core.principal import Principal
    from core.schemas import EventSchemas

SUBSCRIBE, PUBLISH = "SUBSCRIBE", "PUBLISH"


class Refused(Exception):
    """The subscribe or the whole publish is refused (AppSync answers the client 403)."""


def is_handler_event(event: object) -> bool:
    """Whether a Lambda event is an onSubscribe/onPublish invocation."""
    info = event.get("info") if isinstance(event, dict) else None
    return isinstance(info, dict) and info.get("operation") in (SUBSCRIBE, PUBLISH)


async def handle(
    event: dict[str, Any],
    *,
    authorizer: Authorizer,
    schemas: EventSchemas | None,
    namespace: str,
    api_key_is_backend: bool,
) -> dict[str, Any] | None:
    """Decide one invocation; raise Refused."""
    principal = principal_of(event.get("identity"), api_key_is_backend=api_key_is_backend)
    info = event["info"]
    try:
        channel = channels.from_path(namespace, (info.get("channel") or {}).get("path"))
        if info["operation"] == SUBSCRIBE:
            await authorizer.authorize_subscription(principal, channel)
            return None
    except RelayError as exc:
        raise Refused(exc.detail) from exc
    events = event.get("events")
    if not isinstance(events, list):
        raise Refused("a publish carries a list of events")
    if not principal.is_backend:  # the relay's own publishes were counted by the REST API
        try:
            await _count_publish(authorizer, principal, channel, len(events))
        except RelayError as exc:
            return {"events": [{"id": _id_of(e), "error": _reason(exc)} for e in events]}
    try:
        allowed(decide_publish(authorizer.policy, principal, channel), channel)
    except RelayError as exc:
        raise Refused(exc.detail) from exc
    if principal.is_backend:
        return {"events": [{"id": e.get("id"), "payload": e.get("payload")} for e in events]}
    return {"events": [_client_event(e, authorizer, schemas, channel) for e in events]}


async def _count_publish(
    authorizer: Authorizer, principal: Principal, channel: str, events: int
) -> None:
    """Take a client's publish of `events` events to one channel from its `publish` budget and
    the channel's rule's, as core.publishing counts a REST publish (events x channels)."""
    match = authorizer.policy.match(channel)
    rules = () if match is None else ((match.rule, events),)
    await authorizer.limiter.check("publish", principal, None, cost=events, rules=rules)


def _reason(exc: RelayError) -> str:
    """A refusal as one event's error: the detail, and when to try again if it will pass."""
    if isinstance(exc, RateLimited):
        return f"{exc.detail} (retry after {exc.retry_after} s)"
    return exc.detail


def _id_of(event: Any) -> Any:
    return event.get("id") if isinstance(event, dict) else None


def _client_event(
    event: Any, authorizer: Authorizer, schemas: EventSchemas | None, channel: str
) -> dict[str, Any]:
    """One client event passed on unchanged, or refused on its own."""
    ident = _id_of(event)
    payload = event.get("payload") if isinstance(event, dict) else None
    try:
        if not isinstance(payload, dict) or set(payload) - {"event", "data"}:
            raise InvalidPayload('a client event is {"event": "client-...", "data": ...}')
        name = validate_event_name(payload.get("event"), authorizer.provider.limits, client=True)
        encoded = encode_data(payload.get("data"))
        check_payload_size(encoded, authorizer.provider.limits)
        if schemas is not None:
            schemas.check(channel, name, encoded)
    except RelayError as exc:
        return {"id": ident, "error": exc.detail}
    return {"id": ident, "payload": payload}
