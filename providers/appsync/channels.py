"""Relay channel names as AppSync channel paths, both ways, or a clear refusal.

AppSync segments are letters, digits and inner dashes, 1 to 50 characters, and a path has at most
five segments, the namespace first (https://docs.aws.amazon.com/appsync/latest/eventapi/
channel-namespaces.html; the segment rule is the namespace name's, API_ChannelNamespace.html).
The relay's channel names also allow `_ = @ , . ;`. The mapping:

    a dot is a segment separator   private-orders.1          <->  /relay/private-orders/1
    anything else outside AppSync's alphabet is refused (400 invalid-channel), never rewritten

The relay's names cannot hold a `/`, so the dot mapping is one-to-one. A wildcard path
(`/relay/*`) names no one channel the policy could decide, so it maps to none: refused.
"""

from __future__ import annotations

import re

from core.errors import InvalidChannel

MAX_SEGMENTS = 5  # the namespace and four more
SEGMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,48}[A-Za-z0-9])?")
RULE = (
    "AppSync channels take letters, digits and inner dashes in segments of at most 50 "
    "characters, at most 4 dot-separated segments after the namespace"
)


def to_path(namespace: str, channel: str) -> str:
    """`<namespace>/<segments>`, as the HTTP publish body names a channel."""
    segments = channel.split(".")
    if len(segments) > MAX_SEGMENTS - 1 or not all(SEGMENT.fullmatch(s) for s in segments):
        raise InvalidChannel(f"{channel!r} has no AppSync channel path: {RULE}", channel=channel)
    return "/".join((namespace, *segments))


def from_path(namespace: str, path: object) -> str:
    """The relay channel a path (`/relay/a/b` or `relay/a/b`) names; InvalidChannel for a path
    outside the namespace, a wildcard, or segments AppSync would not have let through."""
    if not isinstance(path, str):
        raise InvalidChannel("the channel path must be a string")
    segments = path.removeprefix("/").split("/")
    if segments[0] != namespace:
        raise InvalidChannel(f"the channel is not in the {namespace!r} namespace")
    rest = segments[1:]
    if "*" in rest:
        raise InvalidChannel("a wildcard names no one channel: subscribe to channels by name")
    if not rest or len(segments) > MAX_SEGMENTS or not all(SEGMENT.fullmatch(s) for s in rest):
        raise InvalidChannel(f"not a relay channel path: {RULE}")
    return ".".join(rest)
