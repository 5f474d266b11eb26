"""Who is on the other end of a request: the address the login lockout (django-axes), the trail and failed-login
folding all use.

Behind a reverse proxy every request comes from the proxy, so one guesser would lock everyone out. X-Forwarded-For
is read only when the direct peer is inside TRUSTED_PROXIES, from the right: each trusted proxy appends the address
it saw, so the right-most entry that is not itself a trusted proxy is the last address nobody of ours vouches
beyond — the client. Entries further left are whatever the client sent and are never read. From any other peer the
header is ignored, so it cannot dodge a lockout or frame another address.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_trusted_proxies(raw: str) -> tuple[Network, ...]:
    """TRUSTED_PROXIES: comma-separated CIDRs (a bare address is its own /32 or /128), or ValueError naming the
    bad entry. Host bits must be zero: 10.0.0.1/8 is a typo for something, and guessing which could trust the
    whole internet."""
    if not raw.strip():
        return ()
    networks = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            raise ValueError(f"an empty entry in {raw!r}: separate CIDRs with single commas")
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            if "host bits" in str(exc):
                raise ValueError(f"{entry} has host bits set (did you mean {ipaddress.ip_network(entry, strict=False)}?)") from None
            raise ValueError(f"{entry!r} is not a network in CIDR notation (e.g. 10.0.0.0/8): {exc}") from None
    return tuple(networks)


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry) for entry in entries)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack listener reports an IPv4 peer as ::ffff:a.b.c.d; judge (and record) it as the IPv4 it is.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(request: Any) -> str | None:
    """The client's address for this request (see the module's docstring); AXES_CLIENT_IP_CALLABLE."""
    if request is None:
        return None
    peer_text = request.META.get("REMOTE_ADDR") or None
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    peer = _address(peer_text) if peer_text else None
    if peer is None or not networks or not _trusted(peer, networks):
        return peer_text
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            # Our own proxies append addresses only: this part came from the client. Blame the proxy (at worst
            # its requests are locked out) rather than an address the client chose.
            return str(peer)
        client = address
        if not _trusted(address, networks):
            break
    return str(client)
