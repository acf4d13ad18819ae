"""Who may open one more WebSocket or SSE stream: caps in total and per client address.

IPv6 clients are counted per /64, the block one subscriber is usually given: counting per address
would let one host open `per_address` connections from each of its 2**64 addresses.
"""

from __future__ import annotations

import enum
from collections import Counter
from ipaddress import IPv6Address, ip_address, ip_network


class Refusal(enum.Enum):
    """Why a connection was not admitted."""

    SERVER_FULL = "server_full"
    ADDRESS_FULL = "address_full"


class Ticket:
    """One admitted connection; `release` (idempotent) gives its place back."""

    __slots__ = ("_admission", "_key")

    def __init__(self, admission: Admission, key: str | None) -> None:
        self._admission: Admission | None = admission
        self._key = key

    def release(self) -> None:
        """Give the place back (once, however often called)."""
        if self._admission is not None:
            self._admission._release(self._key)
            self._admission = None


class Admission:
    """Counts the local provider's WebSockets and SSE streams against two caps."""

    def __init__(self, *, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.count = 0
        self._by_key: Counter[str] = Counter()

    def admit(self, address: str | None) -> Ticket | Refusal:
        """A ticket for one more connection from `address`, or why not."""
        if self.count >= self.total:
            return Refusal.SERVER_FULL
        key = _key(address)
        if key is not None:
            if self._by_key[key] >= self.per_address:
                return Refusal.ADDRESS_FULL
            self._by_key[key] += 1
        self.count += 1
        return Ticket(self, key)

    def _release(self, key: str | None) -> None:
        self.count -= 1
        if key is not None:
            self._by_key[key] -= 1
            if self._by_key[key] <= 0:
                del self._by_key[key]


def _key(address: str | None) -> str | None:
    # No address (a Unix socket) is counted in the total only.
    if not address:
        return None
    try:
        parsed = ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, IPv6Address):
        if parsed.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is 192.0.2.1
            return str(parsed.ipv4_mapped)
        return str(ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
