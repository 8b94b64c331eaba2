"""Streaming benchmark: Vektor's /chat/stream and /v1/chat/completions against the upstream
itself, in one run.

Starts, on loopback, the scripted OpenAI-compatible upstream (20 chunks, 10 ms apart) and a
Vektor server (auth and persistence on, SQLite or PostgreSQL), registers one user (with an
API key for /v1) per concurrent client, then measures time to first content chunk (TTFC)
and streams/s at each concurrency, alternating the targets and reporting medians of the
repeats.

    uv run python -m bench.stream [--database postgresql] [--concurrency 1 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench.common import ROOT, Server, free_port, percentile, start, stop, vektor_server

SCRIPT = "chunks=20;delay=0.01;text=word"
DIRECT_FIRST = re.compile(rb'"content": "[^"]')
DIRECT_DONE = b"data: [DONE]"
VEKTOR_FIRST = b'"type": "delta"'
VEKTOR_DONE = b'"type": "done"'


@dataclass
class Target:
    name: str
    port: int
    path: str
    first: re.Pattern[bytes] | bytes
    done: bytes
    bodies: list[bytes]  # one request per client (each client has its own user)
    pid: int  # the serving process, whose CPU time is measured


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


async def one_stream(target: Target, request: bytes) -> tuple[float, float]:
    """Send one request on a fresh connection; (time to first content, time to end)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    writer.write(request)
    data, first = b"", None
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                raise RuntimeError(f"{target.name}: connection closed early: {data[:300]!r}")
            data += chunk
            if first is None and _found(target.first, data):
                first = time.perf_counter() - started
            if target.done in data:
                break
    finally:
        writer.close()
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{target.name}: {data[:200]!r}")
    return first or 0.0, time.perf_counter() - started


async def run_load(target: Target, concurrency: int, total: int) -> dict[str, float]:
    """`total` streams with `concurrency` clients; TTFC percentiles and streams/s."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)
    ttfc: list[float] = []

    async def client(slot: int) -> None:
        request = target.bodies[slot]
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            first, _ = await one_stream(target, request)
            ttfc.append(first)

    cpu_before = cpu_seconds(target.pid)
    started = time.perf_counter()
    await asyncio.gather(*(client(slot) for slot in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = (cpu_seconds(target.pid) - cpu_before) / total * 1000
    ms = [t * 1000 for t in ttfc]
    return {
        "p50": statistics.median(ms),
        "p99": percentile(ms, 99),
        "rate": total / elapsed,
        "cpu_ms": cpu,
    }


def http_request(path: str, body: dict[str, object], token: str | None = None) -> bytes:
    payload = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--streams", type=int, default=600, help="streams per run at c > 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="Gunicorn workers (1: Uvicorn)")
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=["direct", "vektor", "v1"],
        default=["direct", "vektor", "v1"],
    )
    args = parser.parse_args()

    up_port = free_port()
    config = Path(tempfile.mkdtemp(prefix="vektor-bench-config-"))
    deployment = {
        "name": "bench",
        "provider": "openai",
        "model": SCRIPT,
        "base_url": f"http://127.0.0.1:{up_port}/v1",
        "timeout_s": 30,
    }
    (config / "model_configs.json").write_text(json.dumps([deployment]))
    upstream = start(
        [sys.executable, "-m", "tests.support.upstream", str(up_port)],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        ROOT,
    )
    try:
        with vektor_server(
            args.database,
            args.workers,
            VEKTOR_CONFIG_DIR=str(config),
            RATE_LIMIT_CHAT="1000000/minute",
            BCRYPT_ROUNDS="4",
        ) as server:
            wait_upstream(up_port)
            run_all(args, server, upstream, up_port)
    finally:
        stop(upstream)
        shutil.rmtree(config, ignore_errors=True)


def wait_upstream(port: int) -> None:
    """Wait until the scripted upstream answers."""
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the scripted upstream did not start")


def run_all(
    args: argparse.Namespace, server: Server, upstream: subprocess.Popen[bytes], up_port: int
) -> None:
    """Measure each concurrency, alternating direct and Vektor runs."""
    vk_port = int(server.base.rsplit(":", 1)[1])
    vektor = server.process
    clients = max(args.concurrency)
    users = make_users(f"http://127.0.0.1:{vk_port}", clients)
    chat = {"model": "bench", "messages": [{"role": "user", "content": "Hola"}]}
    direct_body = {"model": SCRIPT, "stream": True, "messages": chat["messages"]}
    targets = [
        Target(
            "direct",
            up_port,
            "/v1/chat/completions",
            DIRECT_FIRST,
            DIRECT_DONE,
            [http_request("/v1/chat/completions", direct_body)] * clients,
            upstream.pid,
        ),
        Target(
            "vektor",
            vk_port,
            "/chat/stream",
            VEKTOR_FIRST,
            VEKTOR_DONE,
            [http_request("/chat/stream", chat, token) for token, _ in users],
            vektor.pid,
        ),
        Target(
            "v1",
            vk_port,
            "/v1/chat/completions",
            DIRECT_FIRST,
            DIRECT_DONE,
            [
                http_request("/v1/chat/completions", {**chat, "stream": True}, key)
                for _, key in users
            ],
            vektor.pid,
        ),
    ]
    targets = [t for t in targets if t.name in args.targets]
    print(
        f"database={args.database} workers={args.workers} upstream: {SCRIPT}; "
        f"medians of {args.repeats} runs"
    )
    print(
        f"{'target':<8} {'c':>4} {'streams':>8} {'TTFC p50':>10} {'TTFC p99':>10} "
        f"{'streams/s':>10} {'CPU/stream':>11}"
    )
    for concurrency in args.concurrency:
        total = 30 if concurrency == 1 else args.streams
        results: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
        for _ in range(args.repeats):
            for target in targets:  # alternate, so drift hits both alike
                results[target.name].append(asyncio.run(run_load(target, concurrency, total)))
        for target in targets:
            runs = results[target.name]
            p50 = statistics.median(r["p50"] for r in runs)
            p99 = statistics.median(r["p99"] for r in runs)
            rate = statistics.median(r["rate"] for r in runs)
            cpu = statistics.median(r["cpu_ms"] for r in runs)
            print(
                f"{target.name:<8} {concurrency:>4} {total:>8} {p50:>8.1f}ms "
                f"{p99:>8.1f}ms {rate:>10.1f} {cpu:>9.2f}ms"
            )


if __name__ == "__main__":
    main()
