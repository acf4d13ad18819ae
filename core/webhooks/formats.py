"""The request a batch of events becomes: Pusher's webhook (the default) or a Standard Webhook.

Pusher's: `{"time_ms", "events": [...]}` with `X-Pusher-Key` and `X-Pusher-Signature`, the
HMAC-SHA256 hex of the body under the app secret, so the official Pusher SDKs' webhook validation
accepts it. Standard Webhooks: `webhook-id` (the same on every attempt of a batch, for the
receiver's deduplication), `webhook-timestamp` and `webhook-signature`, made by the
`standardwebhooks` package under RELAY_WEBHOOK_SECRET (`whsec_<base64>`), over
`{"type": "channel_events", "timestamp", "data": {"time_ms", "events"}}`.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.provider import ChannelEvent

STANDARD_TYPE = "channel_events"


def pusher_event(event: ChannelEvent) -> dict[str, Any]:
    """One event as Pusher's webhooks name its fields."""
    out: dict[str, Any] = {"name": event.kind, "channel": event.channel}
    if event.kind == "subscription_count":
        # The sessions put the count in `data`; a forwarded provider webhook may not carry one.
        if event.data is not None and event.data.isdigit():
            out["subscription_count"] = int(event.data)
        return out
    for name in ("event", "data", "socket_id", "user_id"):
        value = getattr(event, name)
        if value is not None:
            out[name] = value
    return out


def events_body(events: Sequence[ChannelEvent], time_ms: int) -> dict[str, Any]:
    """`{"time_ms", "events"}`, Pusher's body."""
    return {"time_ms": time_ms, "events": [pusher_event(e) for e in events]}


def encoded_size(event: ChannelEvent) -> int:
    """About the bytes an event takes in a body (a batch's size limit is on their sum): its
    strings, their JSON escapes aside, and the field names."""
    return (
        sum(
            len(v)
            for v in (event.channel, event.user_id, event.event, event.data, event.socket_id)
            if v
        )
        + 96
    )


def batch_id(events: Sequence[ChannelEvent]) -> str:
    """The same id for the same batch on every attempt (and on every process that retries it)."""
    digest = hashlib.sha256(orjson.dumps([pusher_event(e) for e in events]))
    digest.update(b"".join(str(e.time_ms).encode() for e in events))
    return "msg_" + digest.hexdigest()[:32]


def pusher_request(
    events: Sequence[ChannelEvent], *, key: str, secret: str, now: float
) -> tuple[bytes, dict[str, str]]:
    """Pusher's body and headers; time_ms is the attempt's, as the SDKs refuse a body older
    than five minutes."""
    body = orjson.dumps(events_body(events, int(now * 1000)))
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Pusher-Key": key,
        "X-Pusher-Signature": signature,
    }
    return body, headers


def standard_request(
    events: Sequence[ChannelEvent], *, secret: str, now: float
) -> tuple[bytes, dict[str, str]]:
    """A Standard Webhooks body and headers."""
    from standardwebhooks.webhooks import Webhook  # only when the format is chosen

    when = datetime.fromtimestamp(int(now), tz=UTC)
    body = orjson.dumps(
        {
            "type": STANDARD_TYPE,
            "timestamp": when.isoformat().replace("+00:00", "Z"),
            "data": events_body(events, int(now * 1000)),
        }
    )
    msg_id = batch_id(events)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signature,
    }
    return body, headers
