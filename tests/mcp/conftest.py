"""Real MCP servers started as subprocesses on loopback, stopped by pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.upstream import free_port

ROOT = Path(__file__).resolve().parent.parent.parent


def _wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("MCP test server exited")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("MCP test server did not start")


class McpServers:
    """Starts servers; stops every one of them afterwards."""

    def __init__(self) -> None:
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, *flags: str, port: int | None = None, python: Path | None = None
    ) -> int:
        """Serve the test tools on a free port; `python` runs the SDK 1.x server instead."""
        port = port or free_port()
        if python is None:
            command = [sys.executable, "-m", "tests.support.mcp_server"]
        else:
            command = [str(python), str(ROOT / "tests" / "support" / "mcp_server_v1.py")]
        process = subprocess.Popen(
            [*command, str(port), name, *flags],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes[port] = process
        _wait_port(port, process)
        return port

    def signal(self, port: int, number: int) -> None:
        os.killpg(self.processes[port].pid, number)

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for port in list(self.processes):
            self.kill(port)


@pytest.fixture
def mcp_servers() -> Iterator[McpServers]:
    servers = McpServers()
    yield servers
    servers.stop_all()


@pytest.fixture(scope="session")
def mcp_v1_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away environment with the 1.x SDK, for servers on the older protocol
    revision (2025-11-25, stateful sessions). uv's cache makes it a second or two."""
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to build the SDK 1.x environment"
    where = tmp_path_factory.mktemp("mcp-v1") / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(where)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(where / "bin" / "python"), "mcp>=1.20,<2"],
        check=True,
        timeout=300,
    )
    return where / "bin" / "python"


@pytest.fixture
def url() -> Callable[[int], str]:
    return lambda port: f"http://127.0.0.1:{port}/mcp"
