"""Every exchange, written once; each runs against every server that has the features it needs.

A server that answers otherwise either fails (a bug) or has a `Deviation` beside the exchange:
what it does instead (asserted, so a silent change fails too) and why that is accepted.
"""

from __future__ import annotations

from typing import Final

from tests.conformance.exchanges import cache, events, sockets, watchlists

EXCHANGES: Final = (
    *sockets.EXCHANGES,
    *events.EXCHANGES,
    *cache.EXCHANGES,
    *watchlists.EXCHANGES,
)
