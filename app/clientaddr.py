"""The caller's network address, for rate limits and connection caps.

A header anyone can write is never taken at its word. Behind configured proxies, X-Forwarded-For
is walked from the right, skipping the proxies, as nginx's realip module does with
`real_ip_recursive on`: the first address that is not a trusted proxy is the one a trusted proxy
saw connect. The left-most hop is the client's own claim and is never believed on its own. On
Lambda the address comes from the event AWS wrote (API Gateway's `sourceIp`), never a header.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from ipaddress import IPv4Network, IPv6Network

    from starlette.requests import HTTPConnection

IpAddress = IPv4Address | IPv6Address
MAX_HOPS = 32  # a longer chain is walked this far from the right, no further
MAX_ADDRESS_CHARS = 64
MAX_REMEMBERED_PEERS = 4096


def parse_address(text: str) -> IpAddress | None:
    """An address in canonical form (IPv4-mapped IPv6 as IPv4), or None if it is not one."""
    text = text.strip()
    if not text or len(text) > MAX_ADDRESS_CHARS:
        return None
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.9:443"
        text = text.split(":", 1)[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddress:
    """Finds the client address of a request by the deployment's rules (see the module doc)."""

    def __init__(
        self,
        *,
        trust_proxy_headers: bool,
        trusted_proxies: Sequence[IPv4Network | IPv6Network] = (),
    ) -> None:
        self._proxies = tuple(trusted_proxies)
        # With the flag on and no CIDRs, the peer is the one trusted proxy.
        self._enabled = trust_proxy_headers or bool(self._proxies)
        self._peers: dict[str, tuple[IpAddress | None, str | None]] = {}

    def of(self, conn: HTTPConnection) -> str | None:
        """The address to count this request against."""
        event = conn.scope.get("aws.event")
        if isinstance(event, dict):
            return lambda_source_ip(event)
        client = conn.scope.get("client")
        peer, text = self._peer(client[0] if client else None)
        if peer is None or not self._enabled or not self._is_proxy(peer, peer=True):
            return text
        hops = [h for v in conn.headers.getlist("x-forwarded-for") for h in v.split(",")]
        return str(self.walk(peer, hops))

    def _peer(self, text: str | None) -> tuple[IpAddress | None, str | None]:
        """The peer's address and its canonical text, remembered: a keep-alive connection (and
        a proxy's) asks for the same one on every request."""
        if not text:
            return None, None
        known = self._peers.get(text)
        if known is None:
            address = parse_address(text)
            known = (address, text[:MAX_ADDRESS_CHARS] if address is None else str(address))
            if len(self._peers) >= MAX_REMEMBERED_PEERS:
                self._peers.clear()  # bounded; refilled from the peers still talking
            self._peers[text] = known
        return known

    def walk(self, peer: IpAddress, hops: Sequence[str]) -> IpAddress:
        """The right-most hop that is not a trusted proxy; the last trusted one if all are."""
        client = peer
        for text in list(reversed(hops))[:MAX_HOPS]:
            hop = parse_address(text)
            if hop is None:  # garbage left of what trusted proxies wrote: stop at them
                return client
            client = hop
            if not self._is_proxy(hop, peer=False):
                return hop
        return client

    def _is_proxy(self, address: IpAddress, *, peer: bool) -> bool:
        if not self._proxies:
            return peer  # one-hop mode: only the immediate peer is trusted
        return any(address in network for network in self._proxies)


def lambda_source_ip(event: dict[str, Any]) -> str | None:
    """The caller's address as AWS saw it: API Gateway REST and HTTP APIs, function URLs,
    Lambda@Edge, or an ALB (which appends the address it saw to X-Forwarded-For)."""
    context = event.get("requestContext")
    if isinstance(context, dict):
        if "elb" in context:
            headers = event.get("headers") or {}
            multi = event.get("multiValueHeaders") or {}
            values = multi.get("x-forwarded-for") or [headers.get("x-forwarded-for", "")]
            last = str(values[-1]).split(",")[-1] if values else ""
            address = parse_address(last)
            return None if address is None else str(address)
        for holder in (context.get("http"), context.get("identity")):
            if isinstance(holder, dict) and holder.get("sourceIp"):
                address = parse_address(str(holder["sourceIp"]))
                return None if address is None else str(address)
    records = event.get("Records")
    if isinstance(records, list) and records:  # Lambda@Edge
        request = records[0].get("cf", {}).get("request", {})
        address = parse_address(str(request.get("clientIp", "")))
        return None if address is None else str(address)
    return None
