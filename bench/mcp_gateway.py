"""A tool call through Vektor's /mcp gateway versus calling the MCP server directly.

`uv run python -m bench.mcp_gateway [--calls N] [--runs R] [--database sqlite|postgresql]`

Starts the project's test MCP server (official SDK, streamable HTTP) and `vektor serve`
with that server as its one pool, both on loopback. The official client (current SDK,
one open client each, protocol 2026-07-28) calls `add` directly and through /mcp,
alternating run by run: sequentially (c=1: p50 and p99), and from 20 clients at once
(c=20: calls per second). Vektor's CPU per call is its process CPU seconds over the calls
it relayed. Everything runs on the same machine, so only ratios within a run mean much.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import psutil
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.common import ROOT, free_port, percentile, start, stop, vektor_server
from bench.mcp_tool import _wait_listening

CONCURRENCY = 20
ARGUMENTS = {"a": 2, "b": 40}


@asynccontextmanager
async def _client(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def _caller(client: Client, name: str) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        result = await client.call_tool(name, ARGUMENTS)
        assert not result.is_error, result
        assert getattr(result.content[0], "text", None) == "42", result

    return call


async def _sequential(call: Callable[[], Awaitable[None]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def _concurrent(calls: list[Callable[[], Awaitable[None]]], each: int) -> float:
    """Calls per second with every caller calling `each` times, all at once."""

    async def worker(call: Callable[[], Awaitable[None]]) -> None:
        for _ in range(each):
            await call()

    began = time.perf_counter()
    await asyncio.gather(*(worker(call) for call in calls))
    return len(calls) * each / (time.perf_counter() - began)


async def _api_key(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        user = {"email": "bench@example.com", "username": "bench", "password": "bench-password-1"}
        await http.post("/auth/register", json=user)
        login = await http.post(
            "/auth/login", data={"username": "bench", "password": user["password"]}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = await http.post("/users/me/api-keys", json={"name": "bench"}, headers=headers)
        return str(created.json()["key"])


async def _wait_tools(url: str, key: str) -> None:
    for _ in range(200):
        async with _client(url, key) as client:
            if any(t.name == "bench__add" for t in (await client.list_tools()).tools):
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("the gateway never listed the pool's tools")


async def measure(direct_url: str, base: str, pid: int, calls: int, runs: int) -> dict[str, Any]:
    """Alternate direct and gateway runs; figures per run."""
    key = await _api_key(base)
    gateway_url = f"{base}/mcp"
    await _wait_tools(gateway_url, key)
    vektor = psutil.Process(pid)
    figures: dict[str, list[Any]] = {"direct": [], "gateway": [], "cpu_ms_per_call": []}
    async with _client(direct_url, None) as direct, _client(gateway_url, key) as gateway:
        ways = {"direct": _caller(direct, "add"), "gateway": _caller(gateway, "bench__add")}
        for call in ways.values():
            await _sequential(call, 10)  # warm up
        for _ in range(runs):
            for name, call in ways.items():
                cpu = vektor.cpu_times()
                samples = await _sequential(call, calls)
                many = await _many(
                    direct_url if name == "direct" else gateway_url,
                    None if name == "direct" else key,
                    calls,
                )
                spent = sum(vektor.cpu_times()[:2]) - sum(cpu[:2])
                figures[name].append(
                    {
                        "p50_ms": percentile(samples, 50),
                        "p99_ms": percentile(samples, 99),
                        "calls_per_s_c20": many,
                    }
                )
                if name == "gateway":
                    figures["cpu_ms_per_call"].append(spent * 1000 / (calls * 2))
    return figures


async def _many(url: str, key: str | None, calls: int) -> float:
    """Calls per second from CONCURRENCY clients, `calls` in all."""
    tool = "add" if key is None else "bench__add"
    async with _clients(url, key) as clients:
        each = max(1, calls // CONCURRENCY)
        return await _concurrent([_caller(c, tool) for c in clients], each)


@asynccontextmanager
async def _clients(url: str, key: str | None) -> AsyncIterator[list[Client]]:
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(_client(url, key)) for _ in range(CONCURRENCY)]


def run(calls: int = 200, runs: int = 3, database: str = "sqlite") -> dict[str, Any]:
    """Start the MCP server and Vektor, measure, stop both: medians over the runs."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir)
        config = folder / "config"
        config.mkdir()
        direct_url = f"http://127.0.0.1:{port}/mcp"
        (config / "mcp_servers.json").write_text(json.dumps([{"name": "bench", "url": direct_url}]))
        (config / "model_configs.json").write_text(json.dumps([]))
        server = start(
            [sys.executable, "-m", "tests.support.mcp_server", str(port), "bench"],
            {"PYTHONPATH": str(ROOT)},
            folder,
        )
        try:
            asyncio.run(_wait_listening(port))
            settings = {"VEKTOR_CONFIG_DIR": str(config), "RATE_LIMIT_MCP": "10000000/minute"}
            with vektor_server(database, workers=1, **settings) as vektor:
                figures = asyncio.run(
                    measure(direct_url, vektor.base, vektor.process.pid, calls, runs)
                )
        finally:
            stop(server)
    return _medians(figures)


def _medians(figures: dict[str, list[Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for way in ("direct", "gateway"):
        result[way] = {
            key: round(statistics.median(run[key] for run in figures[way]), 2)
            for key in ("p50_ms", "p99_ms", "calls_per_s_c20")
        }
    result["gateway_added_p50_ms"] = round(
        result["gateway"]["p50_ms"] - result["direct"]["p50_ms"], 2
    )
    result["gateway_share_of_direct_c20"] = round(
        result["gateway"]["calls_per_s_c20"] / result["direct"]["calls_per_s_c20"], 3
    )
    result["vektor_cpu_ms_per_call"] = round(statistics.median(figures["cpu_ms_per_call"]), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    result = run(args.calls, args.runs, args.database)
    print(json.dumps(result, indent=2))
    direct, gateway = result["direct"], result["gateway"]
    print(
        f"\n{args.calls} calls of `add` per way and run, medians of {args.runs} runs "
        f"({args.database})\n"
    )
    print("| way | p50 (c=1) | p99 (c=1) | calls/s (c=20) |")
    print("|---|---|---|---|")
    for name, row in (("direct", direct), ("through /mcp", gateway)):
        print(
            f"| {name} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms | "
            f"{row['calls_per_s_c20']:.0f} |"
        )
    print(
        f"\nadded p50: {result['gateway_added_p50_ms']:+.2f} ms; c=20 throughput "
        f"{result['gateway_share_of_direct_c20']:.0%} of direct; Vektor CPU "
        f"{result['vektor_cpu_ms_per_call']:.2f} ms per call"
    )


if __name__ == "__main__":
    main()
