"""The reference for the /mcp gateway: the least a relay built from the official SDK does,
its server side (the low-level `Server` behind `StreamableHTTPSessionManager`, as /mcp)
passing each `tools/list` and `tools/call` to one held client of the MCP server (as the
pool's). No authentication, pools, checks, limits or accounting; served by Uvicorn with
the settings `vektor serve` uses.

    uv run python -m bench.mcp_relay --port 8124 --upstream http://127.0.0.1:8125/mcp
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.types import CallToolResult, ListToolsResult
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bench.bare_app import serve_relay


def build(upstream_url: str) -> Starlette:
    """The relay app: every request to /mcp served by the SDK, every tool from upstream."""
    held: dict[str, Client] = {}
    schemas: dict[str, Mapping[str, Any]] = {}  # tool name: input schema, listed at start

    async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
        return await held["upstream"].list_tools()

    async def call_tool(ctx: Any, params: Any) -> CallToolResult:
        return await held["upstream"].call_tool(params.name, params.arguments)

    server: Server[Any] = Server(
        "relay",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=schemas.get,  # else the SDK lists every tool on each call
    )
    server.middleware.clear()  # as /mcp: no OpenTelemetry span per message
    manager = StreamableHTTPSessionManager(server, json_response=False)

    class Endpoint:  # an ASGI app, so that Route passes the request through untouched
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await manager.handle_request(scope, receive, send)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            httpx2.AsyncClient(timeout=30) as http,
            Client(streamable_http_client(upstream_url, http_client=http)) as client,
            manager.run(),
        ):
            held["upstream"] = client
            schemas.update((t.name, t.input_schema) for t in (await client.list_tools()).tools)
            yield

    return Starlette(routes=[Route("/mcp", Endpoint())], lifespan=lifespan)


def main() -> None:
    serve_relay(__doc__, build, "the MCP server's streamable HTTP URL")


if __name__ == "__main__":
    main()
