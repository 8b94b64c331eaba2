"""An MCP client on the 1.x SDK, for tests of /mcp: `python mcp_client_v1.py URL TOKEN`.

It runs in the throw-away environment of tests/mcp/conftest.py, never in Vektor's: it
opens a session (initialize), lists the tools and calls `tools__add`, and prints what it
saw as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def main() -> None:
    url, token = sys.argv[1], sys.argv[2]
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        streamablehttp_client(url, headers=headers) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        opened = await session.initialize()
        listed = await session.list_tools()
        result = await session.call_tool("tools__add", {"a": 2, "b": 3})
        seen = {
            "protocol_version": opened.protocolVersion,
            "server": opened.serverInfo.name,
            "tools": sorted(tool.name for tool in listed.tools),
            "add_read_only": next(
                t.annotations.readOnlyHint for t in listed.tools if t.name == "tools__add"
            ),
            "result": [getattr(item, "text", None) for item in result.content],
            "is_error": result.isError,
        }
        print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main())
