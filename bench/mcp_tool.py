"""A tool call through Vektor's MCP pool versus calling the MCP server directly.

`uv run python -m bench.mcp_tool [--calls N] [--runs R]`

Starts the project's test MCP server (official SDK, streamable HTTP) on loopback and calls
its `add` tool sequentially three ways, alternating: through `McpPool.call` (replica
choice, its own task and MCP session per call over the replica's HTTP connection pool,
breaker bookkeeping), directly with a new SDK session per call over one HTTP client (the
same pattern, no pool), and directly on one long-lived SDK session (the floor). Reports
medians over the runs of each way's p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.common import ROOT, free_port, percentile, start, stop
from vektor.mcp.config import McpServerConfig
from vektor.mcp.pool import McpPool, Replica


async def _wait_listening(port: int) -> None:
    for _ in range(400):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError("the MCP server did not start")


async def _timed(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def measure(url: str, calls: int, runs: int) -> dict[str, list[tuple[float, float]]]:
    pool = McpPool("bench", [Replica(McpServerConfig(name="bench", url=url))])
    await pool.refresh()
    arguments = {"a": 2, "b": 40}

    async def through_pool() -> None:
        result = await pool.call("add", arguments, deadline_s=10)
        assert result.content == "42", result

    http = httpx2.AsyncClient()

    async def direct_new_session() -> None:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            await client.call_tool("add", arguments)

    results: dict[str, list[tuple[float, float]]] = {}
    async with http, Client(url) as session:

        async def direct_one_session() -> None:
            await session.call_tool("add", arguments)

        ways = {
            "pool": through_pool,
            "direct, new session per call": direct_new_session,
            "direct, one session": direct_one_session,
        }
        for way in ways.values():
            await _timed(way, 10)  # warm up
        for _ in range(runs):
            for name, way in ways.items():
                samples = await _timed(way, calls)
                results.setdefault(name, []).append(
                    (percentile(samples, 50), percentile(samples, 99))
                )
    await pool.replicas[0].aclose()
    return results


def run(calls: int = 200, runs: int = 3) -> dict[str, dict[str, float]]:
    """Start the MCP server, measure, stop it: {way: {"p50_ms", "p99_ms"}} (medians)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = start(
            [sys.executable, "-m", "tests.support.mcp_server", str(port), "bench"],
            env={"PYTHONPATH": str(ROOT)},
            cwd=Path(workdir),
        )
        try:
            asyncio.run(_wait_listening(port))
            results = asyncio.run(measure(f"http://127.0.0.1:{port}/mcp", calls, runs))
        finally:
            stop(server)
    return {
        name: {
            "p50_ms": statistics.median(f[0] for f in figures),
            "p99_ms": statistics.median(f[1] for f in figures),
        }
        for name, figures in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = run(args.calls, args.runs)
    floor = results["direct, one session"]["p50_ms"]
    print(f"{args.calls} sequential calls of `add` per run, medians of {args.runs} runs\n")
    print("| way | p50 | p99 | p50 added over one session |")
    print("|---|---|---|---|")
    for name, figures in results.items():
        p50, p99 = figures["p50_ms"], figures["p99_ms"]
        print(f"| {name} | {p50:.2f} ms | {p99:.2f} ms | {p50 - floor:+.2f} ms |")


if __name__ == "__main__":
    main()
