"""Which events go out: channel patterns (`*` matches any run of characters) and event kinds."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from core.settings import WEBHOOK_EVENTS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from core.provider import ChannelEvent

KINDS = frozenset(WEBHOOK_EVENTS)
# A held event and the one that cancels it (schedule.py): either is kept while the other is
# wanted, so that a filter on one kind never turns a cancelled pair into a lone event.
PARTNERS = {
    "member_added": "member_removed",
    "member_removed": "member_added",
    "channel_occupied": "channel_vacated",
    "channel_vacated": "channel_occupied",
}


def pattern(text: str) -> re.Pattern[str]:
    """A channel pattern as an anchored regex: `*` is any run of characters, the rest literal."""
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in _split(text)))


def _split(text: str) -> list[str]:
    return [p for p in re.split(r"(\*)", text) if p]


class Filter:
    """The channels (none given: all) and kinds (none given: all) the backend asked for."""

    __slots__ = ("_channels", "_kinds")

    def __init__(self, channels: Iterable[str] = (), kinds: Iterable[str] = ()) -> None:
        self._channels = [pattern(c) for c in channels]
        self._kinds = frozenset(kinds) or KINDS

    def channel(self, name: str) -> bool:
        """Whether events of this channel go out."""
        return not self._channels or any(p.fullmatch(name) for p in self._channels)

    def kind(self, kind: str) -> bool:
        """Whether events of this kind go out."""
        return kind in self._kinds

    def keeps(self, event: ChannelEvent) -> bool:
        """Whether to enqueue the event: its channel wanted, and its kind or its partner's."""
        if not self.channel(event.channel):
            return False
        partner = PARTNERS.get(event.kind)
        return self.kind(event.kind) or (partner is not None and self.kind(partner))
