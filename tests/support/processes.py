"""Server processes for tests: started in a group of their own, waited on, stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def spawn(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start a process quietly, in its own process group."""
    return subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def vektor_env(folder: Path, **settings: str) -> dict[str, str]:
    """The environment of a test server in `folder`: SQLite there, config, logs, fast bcrypt;
    `settings` (e.g. DATABASE_URL) added or overriding."""
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'vektor.db'}",
        "VEKTOR_CONFIG_DIR": str(folder / "config"),
        "LOG_DIR": str(folder / "logs"),
        "BCRYPT_ROUNDS": "4",
        **settings,
    }


def serve_vektor(port: int, env: dict[str, str], cwd: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`vektor serve` on 127.0.0.1:`port` (extra arguments, e.g. `--workers 2`, appended)."""
    command = [sys.executable, "-m", "vektor", "serve", "--host", "127.0.0.1"]
    return spawn([*command, "--port", str(port), *extra], env, cwd)


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], deadline_s: float = 30
) -> httpx.Response:
    """Poll `url` until it answers 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become healthy")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
