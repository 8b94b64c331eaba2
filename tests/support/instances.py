"""Vektor as a deployment runs it: `redis-server` on a spare loopback port, and several
`vektor serve` processes sharing one database and that Redis, each stopped by its pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from tests.support.processes import serve_vektor, stop, wait_healthy
from tests.support.upstream import free_port

SHARED_SECRET = "Zx8qqqqqqqqqqKp2-w7VbN4mT_a9LcR5s-shared"


class RedisServer:
    """`redis-server` on a spare loopback port, stopped by its pid."""

    def __init__(self):
        self.port = free_port()
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if probe.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def flush(self):
        subprocess.run(["redis-cli", "-p", str(self.port), "flushall"], check=True)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextlib.asynccontextmanager
async def serve_instances(
    folder: Path,
    database_url: str,
    redis_port: int,
    env: Mapping[str, str | None] | None = None,
    *,
    names: Sequence[str] = ("a", "b"),
    deadline_s: float = 60,
) -> AsyncIterator[list[str]]:
    """One `vektor serve` per name, in `folder/<name>`, on the database and the Redis given,
    with the models of `folder/config`; `env` on top of the shared settings (None unsets a
    variable). Their base URLs; every process stopped on exit."""
    shared = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "SECRET_KEY": SHARED_SECRET,
        "VEKTOR_CONFIG_DIR": str(folder / "config"),
        "BCRYPT_ROUNDS": "4",
    }
    for key, value in (env or {}).items():
        if value is None:
            shared.pop(key, None)
        else:
            shared[key] = value
    processes, bases = [], []
    try:
        for name in names:
            port = free_port()
            (folder / name).mkdir()
            logs = {**shared, "LOG_DIR": str(folder / name / "logs")}
            processes.append(serve_vektor(port, logs, folder / name))
            bases.append(f"http://127.0.0.1:{port}")
            wait_healthy(f"{bases[-1]}/health/ready", processes[-1], deadline_s=deadline_s)
        yield bases
    finally:
        for process in processes:
            stop(process)
