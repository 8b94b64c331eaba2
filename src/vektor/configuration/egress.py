"""Outbound requests to adapter URLs reach public addresses only, checked on the address the
connection is made to: a name is resolved once, and only its public addresses are dialled,
so a second answer from DNS (rebinding) never reaches an internal one."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(address: IPAddress) -> bool:
    """Globally routable: not private, shared (100.64.0.0/10), loopback, link-local,
    reserved or multicast. An IPv4-mapped IPv6 address is judged by its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def is_allowed(host: str, address: IPAddress, allow: Sequence[str]) -> bool:
    """Whether the allow-list names the host, or a network holding the address."""
    for entry in allow:
        if entry.lower() == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def may_connect(host: str, address: str, allow: Sequence[str]) -> bool:
    """Whether a connection to `address` (resolved from `host`) is allowed."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return is_public(ip) or is_allowed(host, ip, allow)


class PublicOnlyConnector(aiohttp.TCPConnector):
    """A connector that dials only public (or allow-listed) addresses of what it resolved."""

    def __init__(self, allow: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow = tuple(allow)

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[Any]:
        resolved = await super()._resolve_host(host, port, traces=traces)
        usable = [r for r in resolved if may_connect(host, str(r["host"]), self.allow)]
        if not usable:
            raise aiohttp.ClientConnectionError(f"{host} resolves to no public address")
        return usable


def public_http_client(allow: Sequence[str]) -> httpx.AsyncClient:
    """The httpx client (on aiohttp) that adapter notifications go through."""

    def session() -> aiohttp.ClientSession:
        connector = PublicOnlyConnector(allow, limit=1000, keepalive_timeout=30)
        return aiohttp.ClientSession(connector=connector)

    # No proxies from the environment: a proxy would connect on our behalf, unchecked.
    return HttpxAiohttpClient(
        transport=AiohttpTransport(client=session), follow_redirects=False, trust_env=False
    )
