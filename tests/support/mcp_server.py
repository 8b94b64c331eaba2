"""A real MCP server (official SDK) for tests: `python -m tests.support.mcp_server PORT NAME`.

Tools: `whoami` (the replica's name), `add` (read-only), `lookup` (read-only, slow),
`increment` (not idempotent: appends a line to a file, then waits), `fail` (raises),
`slow` (reports progress step by step and writes `started`, then `finished` or `cancelled`
to a file, so a test can see whether the server's handler was cancelled).
`--extra` adds a tool, to make a replica whose catalog differs from its pool's;
`--minimal` offers only `whoami` and `add`, the catalog of mcp_server_v1.py, so that both
SDKs' servers can be replicas of one pool.
`--ttl-ms=N` makes tools/list results carry the cache hint `ttlMs: N`.
"""

from __future__ import annotations

import sys
import time

import anyio
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations


async def _mark(path: anyio.Path, word: str) -> None:
    async with await path.open("a", encoding="utf-8") as handle:
        await handle.write(f"{word}\n")


def build(name: str, extra: bool, minimal: bool = False, ttl_ms: int | None = None) -> MCPServer:
    hints = {"tools/list": CacheHint(ttl_ms=ttl_ms)} if ttl_ms is not None else None
    server = MCPServer(f"test-{name}", cache_hints=hints)

    @server.tool()
    def whoami() -> str:
        """The replica's name."""
        return name

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    if minimal:
        return server

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def lookup(key: str, delay: float = 0.0) -> str:
        """A read-only lookup that may take a while."""
        time.sleep(delay)
        return f"{key}@{name}"

    @server.tool()
    def increment(path: str, delay: float = 0.0) -> str:
        """Append a line to a file (not idempotent), then wait."""
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{name}\n")
        time.sleep(delay)
        return "incremented"

    @server.tool()
    async def slow(path: str, steps: int, ctx: Context, step_s: float = 0.2) -> str:
        """Take `steps` × `step_s` seconds, reporting progress after each step."""
        marks = anyio.Path(path)
        await _mark(marks, "started")
        try:
            for step in range(steps):
                await anyio.sleep(step_s)
                await ctx.report_progress(step + 1, steps, f"step {step + 1}")
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await _mark(marks, "cancelled")
            raise
        await _mark(marks, "finished")
        return f"done in {steps} steps"

    @server.tool()
    def fail() -> str:
        """Always fails."""
        raise RuntimeError("this tool always fails")

    if extra:

        @server.tool()
        def extra_tool() -> str:
            """Only on this replica."""
            return "extra"

    return server


def main() -> None:
    """`PORT NAME [--extra]` serves streamable HTTP; `stdio NAME` serves on stdin/stdout."""
    where, name = sys.argv[1], sys.argv[2]
    ttl = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--ttl-ms=")), None)
    server = build(name, "--extra" in sys.argv, "--minimal" in sys.argv, ttl)
    if where == "stdio":
        server.run("stdio")
    elif "--sse" in sys.argv:
        server.run("sse", host="127.0.0.1", port=int(where))
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(where))


if __name__ == "__main__":
    main()
