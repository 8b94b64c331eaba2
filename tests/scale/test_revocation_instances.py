"""Two real server processes on one database and one Redis, each remembering live
sessions and API keys: a revocation through one is refused by the other on the very next
request, for every way of revoking (PostgreSQL, and SQLite shared by both processes)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import backends, temporary_database
from tests.support.instances import RedisServer, serve_instances
from tests.support.revocations import PATHS, play

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
    async with (
        temporary_database(request.param, folder) as url,
        serve_instances(
            folder, url, shared_redis.port, {"RATE_LIMIT_AUTH": "1000/minute"}
        ) as bases,
    ):
        yield bases


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
