"""Helpers for tests of /mcp: a live app with MCP pools, an API key, official SDK clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import ChatHarness, scripted
from tests.support.upstream import ScriptedUpstream


@dataclass
class Gateway:
    """A live app serving /mcp, a signed-in user's harness and that user's API key."""

    chat: ChatHarness
    key: str

    @property
    def url(self) -> str:
        return str(self.chat.client.base_url.join("/mcp"))

    async def user_id(self) -> str:
        me = await self.chat.client.get("/users/me", headers=self.chat.headers)
        return str(me.json()["id"])


async def pools_ready(chat: ChatHarness, *pools: str) -> None:
    """Wait until every named pool has listed its tools."""
    for _ in range(400):
        registry = chat.app.state.vektor.mcp
        if all(p in registry.pools and registry.pools[p].tools for p in pools):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the MCP tools were never listed")


async def start_gateway(
    chat_harness: Any,
    upstream: ScriptedUpstream,
    mcp: list[dict[str, Any]],
    *pools: str,
    **overrides: Any,
) -> Gateway:
    """Serve the app on loopback with these MCP servers; create an API key."""
    chat = await chat_harness([scripted(upstream, "chunks=1")], live=True, mcp=mcp, **overrides)
    await pools_ready(chat, *(pools or ("tools",)))
    created = await chat.client.post(
        "/users/me/api-keys", json={"name": "ide"}, headers=chat.headers
    )
    assert created.status_code == 201, created.text
    return Gateway(chat, created.json()["key"])


@asynccontextmanager
async def mcp_client(
    url: str, token: str, mode: str = "auto", **options: Any
) -> AsyncIterator[Client]:
    """The current SDK's client on /mcp with a bearer token (`mode="legacy"`: 2025-11-25
    with initialize and a session; "auto": 2026-07-28, stateless)."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=30, **options) as client:
            yield client
