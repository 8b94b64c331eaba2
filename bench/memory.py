"""Memory of one Vektor process: idle, with the local model, and under 1,000 open streams.

Idle: `vektor serve` on loopback with SQLite and the default settings (no model config,
so the built-in SmolLM2 is the only model, loaded on first use); resident memory (RSS)
after start and after a few requests, then after one short chat with the local model.

Streams: a second server with one deployment on the scripted OpenAI-compatible upstream
(20 chunks 0.25 s apart, so each stream stays open about 5 s), one user per client, and
1,000 clients that each open a /chat/stream at once on its own connection. Checks that
every stream ends with a `done` event and how many were open at once, and samples the
server's RSS every 50 ms.

    uv run python -m bench.memory [--streams 1000] [--skip-local-model]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import (
    Server,
    percentile,
    scripted_upstream,
    vektor_server,
)

SCRIPT = "chunks=20;delay=0.25;text=word"
IDLE_TARGET_MB = 150.0
STREAMS_TARGET_MB = 400.0
PASSWORD = "bench password"
START = b'"type":"start"'
DONE = b'"type":"done"'


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (10^6 bytes)."""
    process = psutil.Process(pid)
    total = 0
    for each in [process, *process.children(recursive=True)]:
        try:
            total += each.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 1e6


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (inherited by the servers it starts)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, max(soft, wanted))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def login(client: httpx.Client, name: str) -> dict[str, str]:
    """Register (if new) and log in a user; its auth header."""
    client.post(
        "/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    response = client.post("/auth/login", data={"username": name, "password": PASSWORD})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def chat(client: httpx.Client, headers: dict[str, str], model: str) -> float:
    """One short chat, read to its `done` event; seconds taken."""
    started = time.perf_counter()
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
    }
    with client.stream("POST", "/chat/stream", json=body, headers=headers, timeout=300) as r:
        r.raise_for_status()
        data = b"".join(r.iter_bytes())
    if DONE not in data:
        raise RuntimeError(f"chat with {model} did not end with done: {data[-300:]!r}")
    return time.perf_counter() - started


def measure_idle(with_model: bool = True, requests: int = 20) -> dict[str, Any]:
    """RSS after start, after a few requests, and after one chat with the local model
    (`model_*` keys only when measured)."""
    with (
        vektor_server("sqlite") as server,
        httpx.Client(base_url=server.base, timeout=60) as client,
    ):
        pid = server.process.pid
        time.sleep(1)
        result: dict[str, Any] = {"idle_rss_start_mb": round(rss_mb(pid), 1)}
        headers = login(client, "idle")
        models = client.get("/chat/models", headers=headers).json()
        for _ in range(requests):
            client.get("/users/me", headers=headers).raise_for_status()
            client.get("/chat/history", headers=headers).raise_for_status()
            client.get("/health").raise_for_status()
        time.sleep(1)
        result["idle_rss_mb"] = round(rss_mb(pid), 1)
        local = next((m["name"] for m in models if m["provider"] == "local"), None)
        if with_model and local is not None:
            result["model_load_s"] = round(chat(client, headers, local), 2)
            time.sleep(1)
            result["model_rss_mb"] = round(rss_mb(pid), 1)
            result["model"] = local
    return result


def stream_request(token: str) -> bytes:
    """A raw POST /chat/stream on its own connection."""
    payload = json.dumps(
        {"model": "bench", "messages": [{"role": "user", "content": "Hola"}]}
    ).encode()
    head = (
        "POST /chat/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    return head.encode() + payload


async def make_tokens(base: str, count: int, parallel: int = 8) -> list[str]:
    """Access tokens of `count` new users (BCRYPT_ROUNDS=4 on the server)."""
    tokens: list[str] = [""] * count
    queue = iter(range(count))

    async def worker(client: httpx.AsyncClient) -> None:
        for index in queue:
            name = f"mem{index}"
            await client.post(
                "/auth/register",
                json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
            )
            response = await client.post(
                "/auth/login", data={"username": name, "password": PASSWORD}
            )
            response.raise_for_status()
            tokens[index] = response.json()["access_token"]

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(parallel)))
    return tokens


@dataclass
class Tally:
    """Streams open now and at most, and how each ended."""

    open: int = 0
    peak: int = 0
    done: int = 0
    errors: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)


async def one_stream(port: int, request: bytes, tally: Tally, within: float) -> None:
    """Open one stream (`within` seconds at most); it counts as open from its `start`
    event to its `done` event."""
    started = time.perf_counter()
    opened = False
    writer = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            data = b""
            while DONE not in data:
                chunk = await reader.read(65536)
                if not chunk:
                    raise RuntimeError(f"closed early: {data[:200]!r}")
                data += chunk
                if not opened and START in data:
                    opened = True
                    tally.open += 1
                    tally.peak = max(tally.peak, tally.open)
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(data[:200].decode(errors="replace"))
        tally.done += 1
        tally.durations.append(time.perf_counter() - started)
    except (OSError, RuntimeError, TimeoutError) as exc:
        tally.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if opened:
            tally.open -= 1
        if writer is not None:
            writer.close()


class Sampler(threading.Thread):
    """Reads a process's RSS every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append(rss_mb(self.pid))
            self.halt.wait(self.interval)


def drive_streams(server: Server, streams: int, users: int, timeout: float) -> dict[str, Any]:
    """Open `streams` streams at once, sampling the server's RSS; what happened."""
    tokens = asyncio.run(make_tokens(server.base, users))
    requests = [stream_request(tokens[index % users]) for index in range(streams)]
    port = int(server.base.rsplit(":", 1)[1])
    pid = server.process.pid
    httpx.get(f"{server.base}/health").raise_for_status()
    time.sleep(1)
    before = rss_mb(pid)
    tally = Tally()
    sampler = Sampler(pid)
    sampler.start()
    started = time.perf_counter()
    try:

        async def all_streams() -> None:
            await asyncio.gather(*(one_stream(port, r, tally, timeout) for r in requests))

        asyncio.run(all_streams())
    finally:
        elapsed = time.perf_counter() - started
        sampler.halt.set()
        sampler.join()
    after = rss_mb(pid)
    return {
        "before": before,
        "peak": max(sampler.samples, default=after),
        "after": after,
        "samples": len(sampler.samples),
        "tally": tally,
        "elapsed": elapsed,
    }


def measure_streams(
    streams: int = 1000, users: int | None = None, script: str = SCRIPT, within: float = 120
) -> dict[str, Any]:
    """`streams` streams opened at once against one server: how many completed, the most
    open at once, the server's RSS before, at its peak and after, and the wall time."""
    users = min(users or streams, streams)
    raise_fd_limit(4 * streams + 1024)
    config = Path(tempfile.mkdtemp(prefix="vektor-bench-config-"))
    try:
        with scripted_upstream() as (up_port, _):
            deployment = {
                "name": "bench",
                "provider": "openai",
                "model": script,
                "base_url": f"http://127.0.0.1:{up_port}/v1",
                "timeout_s": 60,
            }
            (config / "model_configs.json").write_text(json.dumps([deployment]))
            with vektor_server(
                "sqlite",
                VEKTOR_CONFIG_DIR=str(config),
                RATE_LIMIT_CHAT="1000000/minute",
                MAX_CONCURRENT_STREAMS=str(-(-streams // users)),
                BCRYPT_ROUNDS="4",
            ) as server:
                run = drive_streams(server, streams, users, within)
    finally:
        shutil.rmtree(config, ignore_errors=True)
    tally: Tally = run["tally"]
    ms = [d * 1000 for d in tally.durations] or [0.0]
    return {
        "streams": streams,
        "users": users,
        "script": script,
        "completed": tally.done,
        "peak_open": tally.peak,
        "rss_before_mb": round(run["before"], 1),
        "peak_rss_mb": round(run["peak"], 1),
        "rss_after_mb": round(run["after"], 1),
        "rss_samples": run["samples"],
        "seconds": round(run["elapsed"], 2),
        "duration_p50_ms": round(statistics.median(ms), 1),
        "duration_p99_ms": round(percentile(ms, 99), 1),
        "errors": tally.errors[:10],
    }


def run(streams: int = 1000, with_model: bool = True, users: int | None = None) -> dict[str, Any]:
    """Idle RSS (and with the local model loaded, if `with_model`) and `streams` open
    streams; JSON-ready, with the targets and whether each was met."""
    result = measure_idle(with_model)
    result["streams"] = measure_streams(streams, users)
    load = result["streams"]
    result["targets"] = {
        "idle_rss_mb": IDLE_TARGET_MB,
        "peak_rss_mb": STREAMS_TARGET_MB,
        "completed": streams,
    }
    result["met"] = {
        "idle_rss_mb": result["idle_rss_mb"] <= IDLE_TARGET_MB,
        "peak_rss_mb": load["peak_rss_mb"] <= STREAMS_TARGET_MB,
        "completed": load["completed"] == streams,
        "all_open_at_once": load["peak_open"] == streams,
    }
    result["note"] = (
        "RSS of the one Uvicorn process (psutil; MB = 10^6 bytes), SQLite, default settings; "
        "idle after start and after 60 light requests (/users/me, /chat/history, /health). "
        "Streams: one /chat/stream per client "
        f"on its own connection, all opened at once, {load['users']} users, upstream script "
        f"`{load['script']}`; RSS sampled every 50 ms."
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--users", type=int, default=None, help="default: one per stream")
    parser.add_argument("--skip-local-model", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.streams, not args.skip_local_model, args.users)
    load = result["streams"]
    met = result["met"]

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    lines = [
        ("idle RSS after start", f"{result['idle_rss_start_mb']:.1f} MB", "", ""),
        (
            "idle RSS after requests",
            f"{result['idle_rss_mb']:.1f} MB",
            f"≤ {IDLE_TARGET_MB:g} MB",
            verdict(met["idle_rss_mb"]),
        ),
    ]
    if "model_rss_mb" in result:
        lines += [
            (
                f"RSS, local model loaded ({result['model']})",
                f"{result['model_rss_mb']:.1f} MB",
                "",
                "",
            ),
            ("first local chat (loads the model)", f"{result['model_load_s']:.2f} s", "", ""),
        ]
    lines += [
        (
            "streams completed with done",
            f"{load['completed']}",
            f"= {args.streams}",
            verdict(met["completed"]),
        ),
        (
            "most streams open at once",
            f"{load['peak_open']}",
            f"= {args.streams}",
            verdict(met["all_open_at_once"]),
        ),
        ("RSS before the streams", f"{load['rss_before_mb']:.1f} MB", "", ""),
        (
            "peak RSS during the streams",
            f"{load['peak_rss_mb']:.1f} MB",
            f"≤ {STREAMS_TARGET_MB:g} MB",
            verdict(met["peak_rss_mb"]),
        ),
        ("RSS after the streams", f"{load['rss_after_mb']:.1f} MB", "", ""),
        (
            "stream duration p50 / p99",
            f"{load['duration_p50_ms'] / 1000:.1f} / {load['duration_p99_ms'] / 1000:.1f} s",
            "",
            "",
        ),
        ("wall time, all streams", f"{load['seconds']:.1f} s", "", ""),
    ]
    print(result["note"])
    print(f"{'measure':<38} {'value':>14} {'target':>10}")
    for measure, value, target, ok in lines:
        print(f"{measure:<38} {value:>14} {target:>10}  {ok}")
    for error in load["errors"]:
        print(f"    {error}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
