"""An MCP server on the older protocol revision (SDK 1.x, `FastMCP`), for tests.

It runs in a throw-away environment of its own (see tests/mcp/conftest.py), never in
Vektor's: `python mcp_server_v1.py PORT NAME [--sse]`.
"""

from __future__ import annotations

import sys

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    server = FastMCP(f"test-v1-{name}", host="127.0.0.1", port=port)

    @server.tool()
    def whoami() -> str:
        """The replica's name."""
        return name

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    server.run("sse" if "--sse" in sys.argv else "streamable-http")


if __name__ == "__main__":
    main()
