"""Granian, for the server comparison only: never a dependency of Vektor.

`vektor serve --prod` runs Gunicorn with Uvicorn workers (httptools and uvloop). To compare,
Granian is installed on first use into a folder of its own outside the repo,
`$XDG_CACHE_HOME/vektor-bench/granian-<version>` (`uv pip install --target`, without the
packages Vektor's environment already has), and put on the server's PYTHONPATH; the
benchmark then serves the same app with `python -m granian --interface asgi --factory`.

    uv run python -m bench.stream --server granian [--workers 2]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "2.8.7"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "vektor-bench"
TARGET = CACHE / f"granian-{VERSION}"
MARKER = TARGET / ".vektor-bench-installed"
INSTALL_TIMEOUT_S = 300


def ensure_installed() -> Path:
    """The folder Granian is installed in (installing it the first time)."""
    if MARKER.exists():
        return TARGET
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("installing Granian for the benchmark needs uv")
    shutil.rmtree(TARGET, ignore_errors=True)
    command = [uv, "pip", "install", "--python", sys.executable, "--target", str(TARGET)]
    subprocess.run([*command, f"granian=={VERSION}"], check=True, timeout=INSTALL_TIMEOUT_S)
    # Its dependencies that Vektor's environment has too (click) stay Vektor's.
    for shared in TARGET.glob("click*"):
        shutil.rmtree(shared, ignore_errors=True)
    MARKER.write_text(VERSION)
    return TARGET


def command(port: int, workers: int) -> list[str]:
    """Granian serving Vektor's app on loopback, as `vektor serve` would: uvloop, HTTP/1.1,
    no access log."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
        "vektor.app:create_app",
    ]
