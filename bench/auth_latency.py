"""Login and GET /users/me latency against a real server on loopback.

Starts `vektor serve` on a spare port (SQLite by default, or `--database postgresql`),
registers one user, then times sequential requests and prints p50/p90/p99.

    uv run python -m bench.auth_latency --logins 200 --reads 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

PG_ADMIN_DSN = os.environ.get(
    "VEKTOR_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def report(name: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(
        f"{name:<16} n={len(ms):<5} p50={statistics.median(ms):7.2f} ms  "
        f"p90={percentile(ms, 90):7.2f} ms  p99={percentile(ms, 99):7.2f} ms"
    )


async def pg_database(create: bool, name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        if create:
            await admin.execute(f'CREATE DATABASE "{name}"')
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
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


def measure(base: str, logins: int, reads: int) -> None:
    password = "benchmark password"
    with httpx.Client(base_url=base, timeout=30) as client:
        client.post(
            "/auth/register",
            json={"email": "bench@example.com", "username": "bench", "password": password},
        ).raise_for_status()
        login_times = []
        tokens = {}
        for _ in range(logins):
            started = time.perf_counter()
            response = client.post("/auth/login", data={"username": "bench", "password": password})
            login_times.append(time.perf_counter() - started)
            response.raise_for_status()
            tokens = response.json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        read_times = []
        for _ in range(reads):
            started = time.perf_counter()
            response = client.get("/users/me", headers=headers)
            read_times.append(time.perf_counter() - started)
            response.raise_for_status()
    report("POST /auth/login", login_times)
    report("GET /users/me", read_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="vektor-bench-"))
    pg_name = f"vektor_bench_{uuid.uuid4().hex[:10]}"
    if args.database == "postgresql":
        asyncio.run(pg_database(True, pg_name))
        host = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]
        url = f"postgresql+asyncpg://{host}/{pg_name}"
    else:
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
        "RATE_LIMIT_AUTH": "1000000/minute",
        "BCRYPT_ROUNDS": str(args.bcrypt_rounds),
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "vektor", "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, process)
        print(f"database={args.database} bcrypt_rounds={args.bcrypt_rounds} concurrency=1")
        measure(base, args.logins, args.reads)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        if args.database == "postgresql":
            asyncio.run(pg_database(False, pg_name))


if __name__ == "__main__":
    main()
