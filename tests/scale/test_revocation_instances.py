"""Two real server processes on one database and one Redis, each remembering live
sessions and API keys: a revocation through one is refused by the other on the very next
request, for every way of revoking (PostgreSQL, and SQLite shared by both processes)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.scale.test_instances import RedisServer
from tests.support.databases import backends, temporary_database
from tests.support.processes import serve_vektor, stop, wait_healthy
from tests.support.revocations import PATHS, play
from tests.support.upstream import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=backends())
async def two_instances(
    request: pytest.FixtureRequest,
    shared_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[list[str]]:
    """Two `vektor serve` processes sharing the database and Redis; their base URLs."""
    folder: Path = tmp_path_factory.mktemp("instances")
    (folder / "config").mkdir()
    async with temporary_database(request.param, folder) as url:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": f"redis://127.0.0.1:{shared_redis.port}/0",
            "SECRET_KEY": "Zx8qqqqqqqqqqKp2-w7VbN4mT_a9LcR5s-shared",
            "VEKTOR_CONFIG_DIR": str(folder / "config"),
            "BCRYPT_ROUNDS": "4",
            "RATE_LIMIT_AUTH": "1000/minute",
        }
        processes, bases = [], []
        try:
            for name in ("a", "b"):
                port = free_port()
                (folder / name).mkdir()
                process = serve_vektor(
                    port, {**env, "LOG_DIR": str(folder / name / "logs")}, folder / name
                )
                processes.append(process)
                bases.append(f"http://127.0.0.1:{port}")
                wait_healthy(f"{bases[-1]}/health/ready", process, deadline_s=60)
            yield bases
        finally:
            for process in processes:
                stop(process)


@pytest.mark.parametrize("path", PATHS)
async def test_a_revocation_through_one_instance_is_refused_by_the_other_at_once(
    two_instances: list[str], path: str
) -> None:
    a_base, b_base = two_instances
    async with (
        httpx.AsyncClient(base_url=a_base, timeout=30) as a,
        httpx.AsyncClient(base_url=b_base, timeout=30) as b,
    ):
        await play(a, b, f"cross{PATHS.index(path)}", path)
