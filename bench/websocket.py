"""/chat/ws against /chat/stream in one run, and what many sockets cost.

Starts, on loopback, the scripted upstream and one Vektor server (Uvicorn, auth and
persistence on), registers the users, then:

1. answers/s at c=50: 50 signed-in sockets each asking one answer at a time, against 50
   SSE clients (a connection per answer, as bench.stream), alternating, medians of the
   repeats; CPU of the server per answer, time to the first delta;
2. the server's RSS with 1,000 idle signed-in sockets, each of its own login session (goal
   ≤ 300 MB), and its CPU while they are idle;
3. 1,000 answers at once over 100 sockets (10 each, one user per socket): all reach `done`
   and all are stored (read back from /chat/history).

    uv run python -m bench.websocket [--database postgresql] [--answers 600] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.common import percentile, scripted_upstream, vektor_server
from bench.load import (
    VEKTOR_DONE,
    VEKTOR_FIRST,
    Target,
    cpu_seconds,
    http_request,
    make_users,
    run_async,
    run_load,
)
from bench.memory import Sampler, raise_fd_limit, rss_mb
from bench.stream import SCRIPT

SLOW_SCRIPT = "chunks=20;delay=0.25;text=word"  # five seconds an answer: all at once
IDLE_TARGET_MB = 300.0
MESSAGES = [{"role": "user", "content": "Hola"}]


def chat_frame(request_id: str, model: str = "bench") -> str:
    """A chat frame."""
    return json.dumps(
        {"type": "chat", "request_id": request_id, "model": model, "messages": MESSAGES}
    )


async def open_socket(url: str, token: str) -> ClientConnection:
    """A socket signed in (its `ready` read); no compression, as the server serves it."""
    socket = await connect(url, compression=None, open_timeout=60, max_queue=None)
    await socket.send(json.dumps({"type": "auth", "token": token}))
    ready = json.loads(await socket.recv())
    if ready.get("type") != "ready":
        raise RuntimeError(f"not signed in: {ready}")
    return socket


async def socket_load(url: str, tokens: list[str], total: int, pid: int) -> dict[str, Any]:
    """`total` answers from len(tokens) sockets, one answer at a time each."""
    sockets = await asyncio.gather(*(open_socket(url, token) for token in tokens))
    left = total
    samples: list[float] = []

    async def client(socket: ClientConnection) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            await socket.send(chat_frame("b"))
            first = None
            while True:
                raw = await socket.recv()
                if first is None and isinstance(raw, str) and '"type":"delta"' in raw:
                    first = time.perf_counter() - started
                if isinstance(raw, str) and '"type":"done"' in raw:
                    break
                if isinstance(raw, str) and '"type":"error"' in raw:
                    raise RuntimeError(raw)
            samples.append((first or 0.0) * 1000)

    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    await asyncio.gather(*(client(s) for s in sockets))
    elapsed = time.perf_counter() - started
    cpu = (cpu_seconds(pid) - cpu_before) / total * 1000
    await asyncio.gather(*(s.close() for s in sockets))
    return {
        "p50": statistics.median(samples),
        "p99": percentile(samples, 99),
        "rate": total / elapsed,
        "cpu_ms": cpu,
    }


def compare(
    base: str, pid: int, users: list[tuple[str, str]], answers: int, repeats: int
) -> list[dict[str, Any]]:
    """Answers/s at c=len(users): SSE and the socket alternately; medians."""
    port = int(base.rsplit(":", 1)[1])
    tokens = [token for token, _ in users]
    body: dict[str, object] = {"model": "bench", "messages": MESSAGES}
    requests = [http_request("/chat/stream", body, token) for token in tokens]
    sse = Target("sse", port, True, VEKTOR_FIRST, VEKTOR_DONE, requests, pid)
    url = base.replace("http://", "ws://") + "/chat/ws"
    run_async(run_load(sse, 10, 20))  # warm up both
    run_async(socket_load(url, tokens[:10], 20, pid))
    runs: dict[str, list[dict[str, Any]]] = {"/chat/stream (SSE)": [], "/chat/ws": []}
    for _ in range(repeats):
        runs["/chat/stream (SSE)"].append(run_async(run_load(sse, len(tokens), answers)))
        runs["/chat/ws"].append(run_async(socket_load(url, tokens, answers, pid)))
    return [
        {
            "transport": name,
            "concurrency": len(tokens),
            "answers": answers,
            "rate": statistics.median(r["rate"] for r in found),
            "first_delta_p50_ms": statistics.median(r["p50"] for r in found),
            "first_delta_p99_ms": statistics.median(r["p99"] for r in found),
            "cpu_ms": statistics.median(r["cpu_ms"] for r in found),
        }
        for name, found in runs.items()
    ]


def logins(base: str, users: int, count: int) -> list[str]:
    """`count` access tokens, each of a login session of its own, of the first `users`
    bench users: the revocation check then looks up `count` sessions (its worst case)."""
    tokens = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for index in range(count):
            form = {"username": f"bench{index % users}", "password": "bench password"}
            response = client.post("/auth/login", data=form)
            response.raise_for_status()
            tokens.append(response.json()["access_token"])
    return tokens


async def idle_sockets(url: str, tokens: list[str], pid: int) -> dict[str, Any]:
    """The server's RSS before and with one idle signed-in socket per token, and its CPU
    while they are idle (the revocation check of every socket, twice a second)."""
    await asyncio.sleep(1)
    before = rss_mb(pid)
    sockets: list[ClientConnection] = []
    for start in range(0, len(tokens), 100):  # in waves, as clients arrive
        wave = tokens[start : start + 100]
        sockets += await asyncio.gather(*(open_socket(url, t) for t in wave))
    await asyncio.sleep(2)
    with_sockets = rss_mb(pid)
    cpu_before, quiet_s = cpu_seconds(pid), 10.0
    await asyncio.sleep(quiet_s)
    idle_cpu = (cpu_seconds(pid) - cpu_before) / quiet_s * 100
    await asyncio.gather(*(s.close() for s in sockets))
    return {
        "sockets": len(sockets),
        "sessions": len(set(tokens)),
        "rss_before_mb": round(before, 1),
        "rss_with_sockets_mb": round(with_sockets, 1),
        "per_socket_kb": round((with_sockets - before) * 1000 / max(1, len(sockets)), 1),
        "idle_cpu_percent": round(idle_cpu, 2),
        "goal_mb": IDLE_TARGET_MB,
        "met": with_sockets <= IDLE_TARGET_MB,
    }


async def many_answers(base: str, tokens: list[str], per_socket: int, pid: int) -> dict[str, Any]:
    """len(tokens) × per_socket answers at once; how many finished and were stored."""
    url = base.replace("http://", "ws://") + "/chat/ws"
    sockets = await asyncio.gather(*(open_socket(url, t) for t in tokens))
    stored_before = await count_stored(base, tokens)
    sampler = Sampler(pid)
    sampler.start()
    started = time.perf_counter()

    async def answers(socket: ClientConnection) -> int:
        for index in range(per_socket):
            await socket.send(chat_frame(str(index), "bench-slow"))
        done = 0
        async with asyncio.timeout(120):
            while done < per_socket:
                frame = json.loads(await socket.recv())
                if frame["type"] == "error":
                    raise RuntimeError(frame)
                done += frame["type"] == "done" and frame["finish_reason"] == "stop"
        return done

    try:
        finished = sum(await asyncio.gather(*(answers(s) for s in sockets)))
    finally:
        elapsed = time.perf_counter() - started
        sampler.halt.set()
        sampler.join()
    await asyncio.gather(*(s.close() for s in sockets))
    stored = await count_stored(base, tokens) - stored_before
    return {
        "sockets": len(sockets),
        "answers": len(sockets) * per_socket,
        "done": finished,
        "stored": stored,
        "wall_s": round(elapsed, 1),
        "peak_rss_mb": round(max(sampler.samples, default=0.0), 1),
    }


async def count_stored(base: str, tokens: list[str]) -> int:
    """Answers stored: assistant messages in every user's history."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        total = 0
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            listed = await client.get("/chat/history?limit=100", headers=headers)
            for conversation in listed.json():
                opened = await client.get(f"/chat/history/{conversation['id']}", headers=headers)
                total += sum(m["role"] == "assistant" for m in opened.json()["messages"])
        return total


def write_models(config: Path, upstream_port: int) -> None:
    """model_configs.json: `bench` (section 1's script) and `bench-slow`."""
    deployments = [
        {
            "name": name,
            "provider": "openai",
            "model": script,
            "base_url": f"http://127.0.0.1:{upstream_port}/v1",
            "timeout_s": 60,
        }
        for name, script in (("bench", SCRIPT), ("bench-slow", SLOW_SCRIPT))
    ]
    (config / "model_configs.json").write_text(json.dumps(deployments))


def run(
    database: str = "sqlite",
    *,
    answers: int = 600,
    repeats: int = 3,
    idle: int = 1000,
    sockets: int = 100,
    per_socket: int = 10,
) -> dict[str, Any]:
    """Every measure on one server; JSON-ready results."""
    raise_fd_limit(4 * idle + 1000)
    config = Path(tempfile.mkdtemp(prefix="vektor-bench-config-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, config, True)
        up_port, _ = stack.enter_context(scripted_upstream())
        write_models(config, up_port)
        server = stack.enter_context(
            vektor_server(
                database,
                VEKTOR_CONFIG_DIR=str(config),
                RATE_LIMIT_CHAT="1000000/minute",
                BCRYPT_ROUNDS="4",
                MAX_CONCURRENT_STREAMS=str(per_socket),
                DB_POOL_SIZE="40",
            )
        )
        pid, url = server.process.pid, server.base.replace("http://", "ws://") + "/chat/ws"
        users = make_users(server.base, max(50, sockets))
        tokens = [token for token, _ in users]
        results: dict[str, Any] = {"database": database}
        sessions = logins(server.base, len(users), idle)
        results["idle"] = run_async(idle_sockets(url, sessions, pid))
        print(json.dumps(results["idle"]), flush=True)
        results["rate"] = compare(server.base, pid, users[:50], answers, repeats)
        for row in results["rate"]:
            print(json.dumps(row), flush=True)
        results["concurrent"] = run_async(
            many_answers(server.base, tokens[:sockets], per_socket, pid)
        )
        print(json.dumps(results["concurrent"]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--answers", type=int, default=600, help="answers per run at c=50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle", type=int, default=1000, help="idle sockets")
    args = parser.parse_args()
    run(args.database, answers=args.answers, repeats=args.repeats, idle=args.idle)


if __name__ == "__main__":
    main()
