"""Ably webhooks: verify X-Ably-Signature, then normalize lifecycle and presence events.

Ably signs batched webhook requests when the integration rule names a key (docs: platform/
integrations/webhooks, "Webhook security"): `X-Ably-Key` carries the key's id and
`X-Ably-Signature` is base64(HMAC-SHA256(key secret, raw body)). Single (unbatched) requests are
never signed, so they pass only with ABLY_ALLOW_UNSIGNED_WEBHOOKS=true. A signature that is
present is always checked, whatever that setting says.

Shapes normalized (same page): batched `{"items": [{source, name, timestamp, data}]}` and the
enveloped single request `{source, channel, timestamp, presence: [...]}`:

    channel.lifecycle  channel.opened -> channel_occupied, channel.closed -> channel_vacated
    channel.presence   action enter (2) -> member_added, leave (3) -> member_removed
                       (present, update and absent change no membership and are skipped)

Message and occupancy sources are skipped: the relay publishes those messages itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import TYPE_CHECKING, Any

import orjson

from core.errors import BadRequest, InvalidSignature
from core.provider import ChannelEvent

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

MAX_EVENTS = 1000  # Ably batches at most 1,000 events per request
# A signed body whose newest event is further off than this is a replay, not news. Wider than
# Pusher's 300 s: Ably batches webhooks and retries failed deliveries with backoff.
MAX_AGE_SECONDS = 600
LIFECYCLE = {"channel.opened": "channel_occupied", "channel.closed": "channel_vacated"}
PRESENCE_ACTIONS = {2: "member_added", 3: "member_removed"}
PRESENCE_NAMES = {"enter": "member_added", "leave": "member_removed"}


def signature(secret: str, body: bytes) -> str:
    """The X-Ably-Signature Ably sends for `body`."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(
    key_name: str,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    allow_unsigned: bool,
) -> None:
    """Raise InvalidSignature (and log why, without the secret) unless the body verifies."""
    signatures = _values(headers, "x-ably-signature")
    keys = _values(headers, "x-ably-key")
    got_signature = signatures[0] if signatures else ""
    got_key = keys[0] if keys else ""
    reason = None
    if len(signatures) > 1 or len(keys) > 1:
        # Refused, not resolved (and never taken for "unsigned"): one copy of each, or none.
        reason = "X-Ably-Signature or X-Ably-Key is given more than once"
    elif not got_signature:
        if allow_unsigned:
            log.info("ably webhook accepted unsigned (ABLY_ALLOW_UNSIGNED_WEBHOOKS=true)")
            return
        reason = "X-Ably-Signature is missing: sign the integration rule with a key"
    elif got_key and got_key not in (key_name, key_name.partition(".")[2]):
        reason = "X-Ably-Key names another key than the one configured"
    elif not hmac.compare_digest(got_signature.encode(), signature(secret, body).encode()):
        reason = "X-Ably-Signature does not match the body"
    if reason is not None:
        log.warning("ably webhook refused: %s", reason)
        raise InvalidSignature(reason)


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    # Every value of the header, repeats and case variants included: Starlette's Headers keep a
    # repeated header and answer .get() with its first value only.
    getlist = getattr(headers, "getlist", None)
    if callable(getlist):
        return [str(value) for value in getlist(name)]
    return [value for key, value in headers.items() if key.lower() == name]


def check_fresh(events: list[ChannelEvent], *, now: float) -> None:
    """Refuse a body whose newest event is older (or newer) than MAX_AGE_SECONDS."""
    if not events:
        return
    newest = max(e.time_ms for e in events) / 1000
    if abs(now - newest) > MAX_AGE_SECONDS:
        log.warning("ably webhook refused: its events are more than %d s off", MAX_AGE_SECONDS)
        raise InvalidSignature(f"the webhook is more than {MAX_AGE_SECONDS} s old or ahead")


def normalize(body: bytes) -> list[ChannelEvent]:
    """The channel lifecycle and presence events of a verified body, in the relay's schema."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the webhook body is not JSON") from exc
    if not isinstance(parsed, dict):
        raise BadRequest("an Ably webhook body is a JSON object")
    if "items" in parsed:
        items = parsed["items"]
        if not isinstance(items, list):
            raise BadRequest("items must be a list")
        events: list[ChannelEvent] = []
        for item in items[:MAX_EVENTS]:
            if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
                raise BadRequest("every batched item needs a data object")
            data = item["data"]
            channel = data.get("channelId", data.get("name"))
            events.extend(_events(item.get("source"), item.get("name"), channel, item, data))
        return events[:MAX_EVENTS]
    return _events(parsed.get("source"), None, parsed.get("channel"), parsed, parsed)


def _events(
    source: object, name: object, channel: object, envelope: dict[str, Any], data: dict[str, Any]
) -> list[ChannelEvent]:
    lifecycle = source == "channel.lifecycle"
    # The reference's own enveloped presence example says source "channel.message": the
    # presence list, not the source, is what marks presence.
    presence = source == "channel.presence" or "presence" in data
    if not lifecycle and not presence:
        log.info("ably webhook: skipping source %r", str(source)[:40])
        return []
    if not isinstance(channel, str) or not channel:
        raise BadRequest("every Ably webhook event names its channel")
    time_ms = envelope.get("timestamp")
    if lifecycle:
        kind = LIFECYCLE.get(str(name))
        if kind is None:
            log.info("ably webhook: skipping lifecycle event %r", str(name)[:40])
            return []
        return [ChannelEvent(kind=kind, channel=channel, time_ms=_millis(time_ms))]
    members = data.get("presence")
    if not isinstance(members, list):
        raise BadRequest("a presence event needs a presence list")
    return [e for m in members[:MAX_EVENTS] if (e := _member(channel, m, time_ms))]


def _member(channel: str, message: object, fallback_ms: object) -> ChannelEvent | None:
    if not isinstance(message, dict):
        raise BadRequest("every presence message is an object")
    action = message.get("action")
    kind = None
    if isinstance(action, int):
        kind = PRESENCE_ACTIONS.get(action)
    elif isinstance(action, str):  # a decoded PresenceMessage names its action
        kind = PRESENCE_NAMES.get(action)
    if kind is None:
        return None
    client_id = message.get("clientId")
    if not isinstance(client_id, str) or not client_id:
        raise BadRequest("a presence message needs a clientId")
    time_ms = _millis(message.get("timestamp", fallback_ms))
    return ChannelEvent(kind=kind, channel=channel, time_ms=time_ms, user_id=client_id)


def _millis(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("Ably webhook timestamps are integers (milliseconds)")
    return value
