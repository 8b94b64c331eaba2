"""What every benchmark needs: a database, a Vektor server on loopback, clean shutdown."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

# Processes are started, polled and stopped the way the tests do it.
from tests.support.processes import spawn as start
from tests.support.processes import stop
from tests.support.processes import wait_healthy as wait_until_ok

__all__ = [
    "ROOT",
    "Server",
    "bench_database",
    "free_port",
    "percentile",
    "redis_layout",
    "scripted_upstream",
    "start",
    "stop",
    "vektor_server",
    "wait_healthy",
    "wait_until_ok",
    "wait_upstream",
]

PG_ADMIN_DSN = os.environ.get(
    "VEKTOR_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("VEKTOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def _pg(statement: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@contextmanager
def bench_database(kind: str, workdir: Path) -> Iterator[str]:
    """A throw-away database: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        return
    name = f"vektor_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    host = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{host}/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until /health answers 200 (or the process dies)."""
    wait_until_ok(f"{base}/health", process, deadline_s=60)


def wait_upstream(port: int) -> None:
    """Wait until the scripted upstream answers."""
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the scripted upstream did not start")


@contextmanager
def scripted_upstream(*, quiet: bool = False) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """The scripted OpenAI-compatible upstream on a spare port; stopped afterwards. `quiet`:
    no traceback logged for each connection it drops on purpose."""
    port = free_port()
    process = start(
        [
            sys.executable,
            "-m",
            "tests.support.upstream",
            str(port),
            *(["--quiet"] if quiet else []),
        ],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        ROOT,
    )
    try:
        wait_upstream(port)
        yield port, process
    finally:
        stop(process)


@contextmanager
def bare_proxy(upstream_port: int) -> Iterator[tuple[int, int]]:
    """bench/bare_proxy.py in front of the upstream on a spare port: (port, pid)."""
    port = free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    process = start(
        [sys.executable, "-m", "bench.bare_proxy", "--port", str(port), "--upstream", upstream],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        ROOT,
    )
    try:
        wait_upstream(port)
        yield port, process.pid
    finally:
        stop(process)


@contextmanager
def redis_layout() -> Iterator[dict[str, str]]:
    """The production layout's settings: REDIS_URL on the machine's Redis, in a namespace of
    the run's own whose keys are deleted afterwards."""
    from redis import Redis

    namespace = f"vektor-bench-{uuid.uuid4().hex[:12]}"
    try:
        yield {"REDIS_URL": REDIS_URL, "REDIS_NAMESPACE": namespace}
    finally:
        client = Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        finally:
            client.close()


@contextmanager
def _removed(folder: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Server:
    """A running `vektor serve`."""

    process: subprocess.Popen[bytes]
    base: str
    workdir: Path
    database_url: str


@contextmanager
def vektor_server(
    database: str, workers: int = 1, server: str = "uvicorn", **settings: str
) -> Iterator[Server]:
    """`vektor serve` on a spare port with its own database and folder; stopped afterwards.
    `workers` > 1 serves with Gunicorn and that many Uvicorn workers. `server="granian"`
    serves the same app with Granian instead (bench/granian_server.py)."""
    workdir = Path(tempfile.mkdtemp(prefix="vektor-bench-"))
    with bench_database(database, workdir) as url, _removed(workdir):
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
            "RATE_LIMIT_AUTH": "1000000/minute",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            **settings,
        }
        command = [sys.executable, "-m", "vektor", "serve", "--port", str(port)]
        if workers > 1:
            command += ["--workers", str(workers)]
        if server == "granian":
            from bench import granian_server

            extra = granian_server.ensure_installed()
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(extra)])
            # `vektor serve` migrates the database before serving; Granian runs the app only.
            migrate = [sys.executable, "-m", "vektor", "init-db"]
            subprocess.run(migrate, env=env, cwd=workdir, check=True, timeout=120)
            command = granian_server.command(port, workers)
        process = start(command, env, workdir)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, process)
            yield Server(process, base, workdir, url)
        finally:
            stop(process)
