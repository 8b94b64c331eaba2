"""Real MCP servers started as subprocesses on loopback, stopped by pid."""

from __future__ import annotations

import os
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

    def start(self, name: str, *flags: str, port: int | None = None) -> int:
        port = port or free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.mcp_server", str(port), name, *flags],
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


@pytest.fixture
def url() -> Callable[[int], str]:
    return lambda port: f"http://127.0.0.1:{port}/mcp"
