"""The load generator of the HTTP benchmarks: targets, requests on fresh connections, the
load from many clients with its latencies, rate and the served process's CPU, and the users
it sends as."""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import psutil
import uvloop

from bench.common import percentile

OPENAI_FIRST = re.compile(rb'"content": ?"[^"]')
OPENAI_DONE = b"data: [DONE]"
VEKTOR_FIRST = b'"type":"delta"'
VEKTOR_DONE = b'"type":"done"'
T = TypeVar("T")


@dataclass
class Target:
    """Something to send completions to, and how to recognise its answers."""

    name: str
    port: int
    stream: bool
    first: re.Pattern[bytes] | bytes
    done: bytes | None  # None: a plain answer, read to the end of the body
    requests: list[bytes]  # one request per client (each client has its own user)
    pid: int  # the serving process, whose CPU time is measured


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """Run the load on uvloop: the load generator shares the machine with what it measures,
    and uvloop takes about a third less CPU per request than asyncio's own loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and its live children (Gunicorn workers)."""
    process = psutil.Process(pid)
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _found(marker: re.Pattern[bytes] | bytes, data: bytes) -> bool:
    return bool(marker.search(data)) if isinstance(marker, re.Pattern) else marker in data


async def one_request(target: Target, request: bytes) -> float:
    """Send one request on a fresh connection; seconds to the first content (streaming) or
    to the whole answer (plain)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    writer.write(request)
    data, first = b"", None
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                if target.done is None:
                    first = time.perf_counter() - started
                    break
                raise RuntimeError(f"{target.name}: connection closed early: {data[:300]!r}")
            data += chunk
            if first is None and target.done is not None and _found(target.first, data):
                first = time.perf_counter() - started
            if target.done is not None and target.done in data:
                break
    finally:
        writer.close()
    if not data.startswith(b"HTTP/1.1 200") or not _found(target.first, data):
        raise RuntimeError(f"{target.name}: {data[:80]!r} … {data[-400:]!r}")
    return first or 0.0


async def run_load(target: Target, concurrency: int, total: int) -> dict[str, Any]:
    """`total` requests from `concurrency` clients; latency percentiles and rate."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)
    samples: list[float] = []

    async def client(slot: int) -> None:
        request = target.requests[slot]
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            samples.append(await one_request(target, request))

    cpu_before = cpu_seconds(target.pid)
    started = time.perf_counter()
    await asyncio.gather(*(client(slot) for slot in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = (cpu_seconds(target.pid) - cpu_before) / total * 1000
    ms = [t * 1000 for t in samples]
    return {
        "p50": statistics.median(ms),
        "p99": percentile(ms, 99),
        "rate": total / elapsed,
        "cpu_ms": cpu,
        "samples": ms,
    }


def http_request(
    path: str, body: dict[str, object], token: str | None = None, host: str = "127.0.0.1"
) -> bytes:
    """A complete HTTP/1.1 request that closes its connection."""
    payload = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        "Connection: close",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def make_users(base: str, count: int) -> list[tuple[str, str]]:
    """(access token, API key) of `count` new users."""
    users = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for index in range(count):
            name = f"bench{index}"
            client.post(
                "/auth/register",
                json={
                    "email": f"{name}@example.com",
                    "username": name,
                    "password": "bench password",
                },
            )
            response = client.post(
                "/auth/login", data={"username": name, "password": "bench password"}
            )
            response.raise_for_status()
            token = response.json()["access_token"]
            key = client.post(
                "/users/me/api-keys",
                json={"name": "bench"},
                headers={"Authorization": f"Bearer {token}"},
            )
            key.raise_for_status()
            users.append((token, key.json()["key"]))
    return users
