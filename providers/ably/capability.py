"""The relay policy for one principal, compiled into an Ably capability that is never wider.

Ably's capability is a map from resource names to operations, and the token carries it: Ably
enforces it on every attach, publish and presence call. Channel names mean nothing to Ably, so
this map is the whole of the enforcement.

Wildcards (Ably docs, auth/capabilities, "Resource names and wildcards"): a `*` replaces whole
`:`-separated segments only — `*` matches every channel, `ns:*` every channel under `ns:`,
`a:*:c` one middle segment — and a `*` inside a segment is a literal character, so `presence-*`
names the single channel "presence-*", not a prefix. The relay's channel alphabet (Pusher's) has
no `:`, so no relay pattern has an Ably wildcard of the same extent: `*` would also open names no
rule matches (`a:b`) and channels an earlier rule decides (first match wins). The capability
therefore lists exact channel names only, each one put to `Policy.decide`; patterns with an open
placeholder are left out (`Capability.left_out`), narrower and never wider.

Operations:
    subscribe  SUBSCRIBE is allowed (Ably also lets a subscriber read the presence set)
    presence   SUBSCRIBE is allowed as a presence member (presence- channels, signed-in users)
    publish    CLIENT_EVENT is allowed by a term other than `subscriber`: a client publishing on
               its own connection is what the policy's client_events means; PUBLISH stays with the
               relay's REST API, where validation, idempotency and limits apply
    history    HISTORY is allowed

`subscriber` never becomes `publish`. It grants client events as a Pusher app with them enabled
does: `client-*` names only, to the other subscribers, ten a second. Ably's `publish` has no such
bounds (any message name, so a subscriber could send what looks like a backend event, which the
policy's `publish` keeps for backends), so the token is compiled from the policy with that term
left out of every rule's client_events: narrower, never wider. A rule that names who may send
(`user`, `claim:...`) still grants `publish`, as the operator chose.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from msgspec import Struct

from core.errors import InvalidChannel
from core.policy import Action
from core.policy.grants import grants
from core.policy.senders import without_subscriber
from core.validation import validate_channel

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from core.policy import Policy
    from core.policy.grants import ChannelGrant, PatternGrant
    from core.principal import Principal
    from core.provider import Limits

SUBSCRIBE = "subscribe"
PUBLISH = "publish"
PRESENCE = "presence"
HISTORY = "history"


class Capability(Struct, frozen=True):
    """Resource name -> sorted operations, and the policy patterns that could not be included."""

    resources: Mapping[str, tuple[str, ...]]
    left_out: tuple[PatternGrant, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the token would open nothing."""
        return not self.resources

    def text(self) -> str:
        """The capability JSON, in the canonical form Ably's SDKs sign (keys and ops sorted)."""
        return json.dumps({name: list(ops) for name, ops in self.resources.items()}, sort_keys=True)


def operations(grant: ChannelGrant) -> tuple[str, ...]:
    """The Ably operations for the relay actions allowed on one channel, sorted."""
    ops: set[str] = set()
    if Action.SUBSCRIBE in grant.actions:
        ops.add(SUBSCRIBE)
        if grant.presence:
            ops.add(PRESENCE)
    if Action.CLIENT_EVENT in grant.actions:
        ops.add(PUBLISH)
    if Action.HISTORY in grant.actions:
        ops.add(HISTORY)
    return tuple(sorted(ops))


def compile_capability(
    policy: Policy, principal: Principal, limits: Limits, *, channels: Iterable[str] = ()
) -> Capability:
    """The exact channels `principal` may use (plus the named `channels` the policy allows)."""
    found = grants(without_subscriber(policy), principal, channels=channels)
    resources: dict[str, tuple[str, ...]] = {}
    for grant in found.channels:
        ops = operations(grant)
        if ops and _plain_channel(grant.channel, limits):
            resources[grant.channel] = ops
    return Capability(dict(sorted(resources.items())), found.patterns)


def _plain_channel(name: str, limits: Limits) -> bool:
    # A valid relay channel never holds `*`, `:` or a leading `[`, so Ably cannot read it as a
    # wildcard or a qualified resource ([meta], [queue]); checked again here because a token is
    # the one place a mistake would widen access.
    try:
        validate_channel(name, limits)
    except InvalidChannel:
        return False
    return not ({"*", ":"} & set(name)) and not name.startswith("[")
