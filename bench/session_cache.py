"""Authenticated `GET /users/me` at c=50 on one process, against a bare FastAPI app
answering a constant JSON (`bench/bare_app.py`, same Uvicorn settings), in one run.

Vektor is measured with the session cache off (`SESSION_CACHE=off`: the database is asked
on every request) and on; with `--redis`, also on Redis with both kinds of revocation
counter (`SESSION_CACHE_EPOCH=user` and `global`), with and without revocations going on
meanwhile (other users signing in and out). All servers run at once, idle but for the one
under load; each round measures them in a different order; medians are printed.

    uv run python -m bench.session_cache [--database postgresql] [--redis] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import httpx

from bench.common import ROOT, free_port, start, stop, vektor_server, wait_until_ok
from bench.load import cpu_seconds, run_async

PASSWORD = "benchmark password"
LENGTH = re.compile(rb"content-length: *([0-9]+)", re.IGNORECASE)
CHURN_PAUSE_S = 0.05  # between one sign-in-and-out and the next


@dataclass
class Target:
    """A server under test and the bearer token of each client connection."""

    name: str
    base: str
    pid: int
    tokens: list[str | None]
    churn: bool = False
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    revocations: list[float] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


def _request(token: str | None) -> bytes:
    lines = ["GET /users/me HTTP/1.1", "Host: 127.0.0.1"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _connection(port: int, request: bytes, left: list[int]) -> None:
    """One keep-alive connection sending requests until `left[0]` is used up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while left[0] > 0:
            left[0] -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{head[:200]!r}")
            found = LENGTH.search(head)
            await reader.readexactly(int(found.group(1)) if found else 0)
    finally:
        writer.close()


async def _churn(base: str, stop_at: asyncio.Event, count: list[int]) -> None:
    """Other users signing in and out (each logout a revocation) until told to stop."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        name = f"churn{uuid.uuid4().hex[:8]}"
        await _register(client, name)
        while not stop_at.is_set():
            tokens = await _login(client, name)
            out = await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
            out.raise_for_status()
            count[0] += 1
            await asyncio.sleep(CHURN_PAUSE_S)


async def measure(target: Target, total: int) -> None:
    """`total` requests over the target's connections; requests/s and CPU per answer."""
    left = [total]
    stop_at, revoked = asyncio.Event(), [0]
    churn = asyncio.create_task(_churn(target.base, stop_at, revoked)) if target.churn else None
    before = cpu_seconds(target.pid)
    started = time.perf_counter()
    await asyncio.gather(*(_connection(target.port, _request(t), left) for t in target.tokens))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(target.pid) - before
    if churn is not None:
        stop_at.set()
        await churn
    target.rates.append(total / elapsed)
    target.cpu_ms.append(cpu / total * 1000)
    target.revocations.append(revoked[0] / elapsed)


async def _register(client: httpx.AsyncClient, name: str) -> None:
    response = await client.post(
        "/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    response.raise_for_status()


async def _login(client: httpx.AsyncClient, name: str) -> dict[str, str]:
    response = await client.post("/auth/login", data={"username": name, "password": PASSWORD})
    response.raise_for_status()
    tokens: dict[str, str] = response.json()
    return tokens


async def sign_in(base: str, users: int) -> list[str | None]:
    """Register `users` users; one access token each."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        tokens: list[str | None] = []
        for index in range(users):
            name = f"reader{index}"
            await _register(client, name)
            tokens.append((await _login(client, name))["access_token"])
        return tokens


@contextmanager
def bare_app() -> Iterator[tuple[str, int]]:
    """The reference app on a spare port."""
    port = free_port()
    command = [sys.executable, "-m", "bench.bare_app", "--port", str(port)]
    process = start(command, {**os.environ, "PYTHONPATH": str(ROOT)}, ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_ok(base + "/users/me", process, deadline_s=60)
        yield base, process.pid
    finally:
        stop(process)


def variants(redis: str | None) -> list[tuple[str, dict[str, str], bool]]:
    """(name, settings, with revocations meanwhile) of every Vektor measured."""
    found = [("cache off", {"SESSION_CACHE": "off"}, False), ("cache on", {}, False)]
    if redis:
        shared = {"REDIS_URL": redis, "REDIS_NAMESPACE": f"bench{uuid.uuid4().hex[:8]}"}
        found += [
            ("redis, cache off", {**shared, "SESSION_CACHE": "off"}, False),
            ("redis, per-user epoch", {**shared, "SESSION_CACHE_EPOCH": "user"}, False),
            ("redis, global epoch", {**shared, "SESSION_CACHE_EPOCH": "global"}, False),
            ("redis, cache off, churn", {**shared, "SESSION_CACHE": "off"}, True),
            ("redis, per-user epoch, churn", {**shared, "SESSION_CACHE_EPOCH": "user"}, True),
            ("redis, global epoch, churn", {**shared, "SESSION_CACHE_EPOCH": "global"}, True),
        ]
    return found


def run(database: str, redis: str | None, rounds: int, total: int, users: int) -> list[Target]:
    """Start every server, then measure them round after round in rotating order."""
    with ExitStack() as stack:
        base, pid = stack.enter_context(bare_app())
        targets = [Target("bare FastAPI", base, pid, [None] * users)]
        servers: dict[str, tuple[str, int, list[str | None]]] = {}
        for name, settings, churn in variants(redis):
            key = name.removesuffix(", churn")
            if key not in servers:
                server = stack.enter_context(vektor_server(database, BCRYPT_ROUNDS="4", **settings))
                tokens = run_async(sign_in(server.base, users))
                servers[key] = (server.base, server.process.pid, tokens)
            base, pid, tokens = servers[key]
            targets.append(Target(name, base, pid, tokens, churn=churn))
        for round_number in range(rounds):
            shift = round_number % len(targets)
            for target in targets[shift:] + targets[:shift]:
                run_async(measure(target, total))
                print(
                    f"round {round_number + 1} {target.name:<30} "
                    f"{target.rates[-1]:8.0f}/s {target.cpu_ms[-1]:6.3f} ms CPU",
                    flush=True,
                )
        return targets


def print_table(database: str, targets: list[Target]) -> None:
    """Medians: requests/s, share of the bare app's, CPU per answer, revocations/s."""
    bare = statistics.median(targets[0].rates)
    print(f"\nGET /users/me, c={len(targets[0].tokens)}, one process, {database}")
    print(f"{'server':<30} {'req/s':>8} {'of bare':>8} {'CPU/answer':>11} {'revoc./s':>9}")
    for target in targets:
        rate = statistics.median(target.rates)
        cpu = statistics.median(target.cpu_ms)
        revoked = statistics.median(target.revocations)
        print(f"{target.name:<30} {rate:8.0f} {rate / bare:8.1%} {cpu:8.3f} ms {revoked:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--redis", nargs="?", const="redis://127.0.0.1:6379/0", default=None, help="Redis URL"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    targets = run(args.database, args.redis, args.rounds, args.requests, args.concurrency)
    print_table(args.database, targets)


if __name__ == "__main__":
    main()
