"""Client addresses behind trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=32)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _is_trusted(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[str]
) -> str:
    """The client's address: X-Forwarded-For is believed only hop by hop from trusted proxies."""
    address = peer or "unknown"
    if not trusted_proxies or not forwarded_for:
        return address
    networks = _networks(tuple(trusted_proxies))
    if not _is_trusted(address, networks):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _is_trusted(hop, networks):
            return hop[:64]
        address = hop
    return address


def limit_key(address: str) -> str:
    """The key a per-address limit counts against: an IPv6 client by its /64, the block a
    single subscriber is usually handed, so that rotating inside it earns no new budget;
    IPv4 (also IPv4-mapped IPv6) by the full address."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
