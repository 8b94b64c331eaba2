"""A tool call through Vektor's /mcp gateway versus calling the MCP server directly.

`uv run python -m bench.mcp_gateway [--calls N] [--runs R] [--database sqlite|postgresql]`

Starts the project's test MCP server (official SDK, streamable HTTP) and `vektor serve`
with that server as its one pool, both on loopback. The official client (current SDK,
one open client each, protocol 2026-07-28) calls `add` directly and through /mcp,
alternating run by run: sequentially (c=1: p50 and p99), and from 20 clients at once
(c=20: calls per second). Vektor's CPU per call is its process CPU seconds over the calls
it relayed. Everything runs on the same machine, so only ratios within a run mean much.

The c=20 runs also count the CPU of every process taking part (the MCP server, the calling
clients, which are this process, and Vektor) per call, and how many cores they kept busy
together: when the direct run already keeps the machine's cores busy, a relayed call can go
no faster than the sum of the three processes' CPU per call allows.
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
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import psutil
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.common import ROOT, free_port, percentile, start, stop, vektor_server
from bench.mcp_tool import _wait_listening
from bench.sections import gateway_section

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


async def measure(
    urls: dict[str, str], base: str, pids: dict[str, int], calls: int, runs: int
) -> dict[str, Any]:
    """Alternate the ways (direct, the bare SDK relay, the gateway); figures per run."""
    key = await _api_key(base)
    await _wait_tools(urls["gateway"], key)
    processes = {who: psutil.Process(pid) for who, pid in pids.items()}
    processes["client"] = psutil.Process()
    vektor = processes["vektor"]
    ways = {
        "direct": (urls["direct"], None, "add"),
        "relay": (urls["relay"], None, "add"),
        "gateway": (urls["gateway"], key, "bench__add"),
    }
    figures: dict[str, list[Any]] = {way: [] for way in ways}
    figures["cpu_ms_per_call"] = []
    async with AsyncExitStack() as stack:
        callers = {
            way: _caller(await stack.enter_async_context(_client(url, token)), tool)
            for way, (url, token, tool) in ways.items()
        }
        for call in callers.values():
            await _sequential(call, 10)  # warm up
        for _ in range(runs):
            for way, (url, token, _tool) in ways.items():
                cpu = vektor.cpu_times()
                samples = await _sequential(callers[way], calls)
                many = await _many(url, token, calls, processes)
                spent = sum(vektor.cpu_times()[:2]) - sum(cpu[:2])
                figures[way].append(
                    {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99), **many}
                )
                if way == "gateway":
                    figures["cpu_ms_per_call"].append(spent * 1000 / (calls * 2))
    return figures


async def _many(
    url: str, key: str | None, calls: int, processes: dict[str, psutil.Process]
) -> dict[str, float]:
    """Calls per second from CONCURRENCY clients, `calls` in all, with the CPU each process
    spent per call meanwhile and the cores they kept busy together (clients opened first)."""
    tool = "add" if key is None else "bench__add"  # only the gateway takes a key
    async with _clients(url, key) as clients:
        each = max(1, calls // CONCURRENCY)
        before = {who: sum(p.cpu_times()[:2]) for who, p in processes.items()}
        began = time.perf_counter()
        rate = await _concurrent([_caller(c, tool) for c in clients], each)
        wall = time.perf_counter() - began
        spent = {who: sum(p.cpu_times()[:2]) - before[who] for who, p in processes.items()}
    made = each * CONCURRENCY
    return {
        "calls_per_s_c20": rate,
        **{f"c20_cpu_ms_{who}": 1000 * cpu / made for who, cpu in spent.items()},
        "c20_cores_busy": sum(spent.values()) / wall,
    }


@asynccontextmanager
async def _clients(url: str, key: str | None) -> AsyncIterator[list[Client]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(_client(url, key)) for _ in range(CONCURRENCY)]


def run(calls: int = 200, runs: int = 3, database: str = "sqlite") -> dict[str, Any]:
    """Start the MCP server, the bare relay and Vektor, measure, stop them: medians over the
    runs."""
    port, relay_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir)
        config = folder / "config"
        config.mkdir()
        direct_url = f"http://127.0.0.1:{port}/mcp"
        (config / "mcp_servers.json").write_text(json.dumps([{"name": "bench", "url": direct_url}]))
        (config / "model_configs.json").write_text(json.dumps([]))
        env = {"PYTHONPATH": str(ROOT)}
        server = start(
            [sys.executable, "-m", "tests.support.mcp_server", str(port), "bench"], env, folder
        )
        relay = None
        try:
            asyncio.run(_wait_listening(port))
            relay = start(
                [
                    sys.executable,
                    "-m",
                    "bench.mcp_relay",
                    "--port",
                    str(relay_port),
                    "--upstream",
                    direct_url,
                ],
                env,
                folder,
            )
            asyncio.run(_wait_listening(relay_port))
            settings = {"VEKTOR_CONFIG_DIR": str(config), "RATE_LIMIT_MCP": "10000000/minute"}
            with vektor_server(database, workers=1, **settings) as vektor:
                urls = {
                    "direct": direct_url,
                    "relay": f"http://127.0.0.1:{relay_port}/mcp",
                    "gateway": f"{vektor.base}/mcp",
                }
                pids = {"mcp_server": server.pid, "relay": relay.pid, "vektor": vektor.process.pid}
                figures = asyncio.run(measure(urls, vektor.base, pids, calls, runs))
        finally:
            for process in (relay, server):
                if process is not None:
                    stop(process)
    return _medians(figures)


def _medians(figures: dict[str, list[Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for way in ("direct", "relay", "gateway"):
        result[way] = {
            key: round(statistics.median(run[key] for run in figures[way]), 2)
            for key in figures[way][0]
        }
    direct = result["direct"]
    for way in ("relay", "gateway"):
        result[f"{way}_added_p50_ms"] = round(result[way]["p50_ms"] - direct["p50_ms"], 2)
        share = result[way]["calls_per_s_c20"] / direct["calls_per_s_c20"]
        result[f"{way}_share_of_direct_c20"] = round(share, 3)
    result["vektor_cpu_ms_per_call"] = round(statistics.median(figures["cpu_ms_per_call"]), 2)
    result["cores"] = psutil.cpu_count()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    result = run(args.calls, args.runs, args.database)
    print(json.dumps(result, indent=2))
    print(
        f"\n{args.calls} calls of `add` per way and run, medians of {args.runs} runs "
        f"({args.database})\n"
    )
    print("\n".join(gateway_section(result)[2:]))


if __name__ == "__main__":
    main()
