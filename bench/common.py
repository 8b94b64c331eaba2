"""What every benchmark needs: a database, a Vektor server on loopback, clean shutdown."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
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

PG_ADMIN_DSN = os.environ.get(
    "VEKTOR_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ROOT = Path(__file__).resolve().parent.parent


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


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own group, quietly."""
    return subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started by `start`, by its pid."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until /health answers 200 (or the process dies)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not start")


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
def vektor_server(database: str, workers: int = 1, **settings: str) -> Iterator[Server]:
    """`vektor serve` on a spare port with its own database and folder; stopped afterwards.
    `workers` > 1 serves with Gunicorn and that many Uvicorn workers."""
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
        process = start(command, env, workdir)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, process)
            yield Server(process, base, workdir, url)
        finally:
            stop(process)
