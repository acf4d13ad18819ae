"""Pusher webhooks: verify X-Pusher-Key and X-Pusher-Signature, then normalize the events."""

from __future__ import annotations

import hmac
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from core.errors import BadRequest, InvalidSignature
from core.provider import ChannelEvent
from providers.pusherproto import signing

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

KINDS = frozenset(
    {
        "channel_occupied",
        "channel_vacated",
        "member_added",
        "member_removed",
        "client_event",
        "subscription_count",
        "cache_miss",
    }
)
MAX_EVENTS = 1000
# As the official SDKs do: a webhook older (or newer) than this is a replay, not news.
MAX_AGE_SECONDS = 300


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    # Every value of the header, repeats and case variants included: Starlette's Headers keep a
    # repeated header and answer .get() with its first value only.
    getlist = getattr(headers, "getlist", None)
    if callable(getlist):
        return [str(value) for value in getlist(name)]
    return [value for key, value in headers.items() if key.lower() == name]


def verify(key: str, secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise InvalidSignature (and log why, without the secret) unless Pusher signed the body."""
    keys = _values(headers, "x-pusher-key")
    signatures = _values(headers, "x-pusher-signature")
    got_key = keys[0] if keys else ""
    got_signature = signatures[0] if signatures else ""
    reason = None
    if len(keys) > 1 or len(signatures) > 1:
        # Refused, not resolved: which copy counts must never be a choice left to a proxy.
        reason = "X-Pusher-Key or X-Pusher-Signature is given more than once"
    elif not got_key or not got_signature:
        reason = "X-Pusher-Key or X-Pusher-Signature is missing"
    elif not hmac.compare_digest(got_key.encode(), key.encode()):
        reason = "X-Pusher-Key is not this app's key"
    elif not hmac.compare_digest(
        got_signature.encode(), signing.webhook_signature(secret, body).encode()
    ):
        reason = "X-Pusher-Signature does not match the body"
    if reason is not None:
        log.warning("pusher webhook refused: %s", reason)
        raise InvalidSignature(reason)


def normalize(body: bytes, *, now: float | None = None) -> list[ChannelEvent]:
    """The events of a verified webhook body in the relay's schema; stale bodies are refused."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the webhook body is not JSON") from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("events"), list):
        raise BadRequest("a Pusher webhook is an object with an events list")
    time_ms = parsed.get("time_ms")
    if not isinstance(time_ms, int) or isinstance(time_ms, bool):
        raise BadRequest("time_ms must be an integer")
    current = time.time() if now is None else now
    if abs(current - time_ms / 1000) > MAX_AGE_SECONDS:
        log.warning("pusher webhook refused: time_ms is more than %d s off", MAX_AGE_SECONDS)
        raise InvalidSignature(f"the webhook is more than {MAX_AGE_SECONDS} s old or ahead")
    events: list[Any] = parsed["events"][:MAX_EVENTS]
    out = []
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("channel"), str):
            raise BadRequest("every webhook event needs a channel")
        kind = event.get("name")
        if kind not in KINDS:
            log.info("pusher webhook: ignoring unknown event kind %r", str(kind)[:40])
            continue
        if kind == "subscription_count":
            out.append(ChannelEvent(kind, event["channel"], time_ms, data=_count(event)))
            continue
        out.append(
            ChannelEvent(
                kind=kind,
                channel=event["channel"],
                time_ms=time_ms,
                user_id=_text(event.get("user_id")),
                event=_text(event.get("event")),
                data=_text(event.get("data")),
                socket_id=_text(event.get("socket_id")),
            )
        )
    return out


def _count(event: dict[str, Any]) -> str | None:
    """A subscription_count event's number, in `data` as the sessions put it (the outbound
    formats read it there); None when it carries none, or something that is no count."""
    count = event.get("subscription_count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return str(count)
    if count is not None:
        log.info("pusher webhook: a subscription_count without a count (%s)", type(count).__name__)
    return None


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()
