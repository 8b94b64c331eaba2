"""The SQLite thread of the hot-path writes: units run in turn on its own connection, next to
the ORM's (each waits for the other's write lock), and a restore's batches take turns with
them (`sqlite_turn`)."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from vektor.core.database import Base, create_engine
from vektor.core.direct import DirectDatabase
from vektor.core.sqlite_thread import sqlite_transaction


@asynccontextmanager
async def _opened(url: str, *, tables: bool = True) -> AsyncIterator[tuple[Any, DirectDatabase]]:
    """An engine (the app's, with the schema, when `tables`) and its `DirectDatabase`,
    both closed afterwards."""
    if not tables:
        engine = create_async_engine(url)
    else:
        engine = create_async_engine(url) if ":memory:" in url else create_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
    direct = DirectDatabase(engine)
    try:
        yield engine, direct
    finally:
        await direct.aclose()
        await engine.dispose()


async def test_sqlite_thread_runs_units_in_turn_and_outlives_a_cancelled_caller(tmp_path):
    async with _opened(f"sqlite+aiosqlite:///{tmp_path / 'units.db'}") as (engine, direct):
        await direct.on_sqlite(lambda c: c.execute("CREATE TABLE t (n INTEGER UNIQUE)"))

        def insert(n: int, c: Any) -> int:
            with sqlite_transaction(c):
                c.execute("INSERT INTO t VALUES (?)", (n,))
            return n

        assert await asyncio.gather(
            *(direct.on_sqlite(functools.partial(insert, n)) for n in range(50))
        ) == list(range(50))

        assert any(t.name == "vektor-sqlite" for t in threading.enumerate())

        # a unit whose caller went away still runs to its end
        slow = asyncio.ensure_future(direct.on_sqlite(functools.partial(insert, 50)))
        await asyncio.sleep(0)
        slow.cancel()

        # a unit that fails half way leaves no transaction open behind it
        def half(c: Any) -> None:
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT INTO t VALUES (1000)")
            c.execute("INSERT INTO t VALUES (1)")

        with pytest.raises(sa_exc.IntegrityError):
            await direct.on_sqlite(half)
        count = await direct.on_sqlite(
            lambda c: c.execute("SELECT count(*), max(n) FROM t").fetchone()
        )
        assert tuple(count) == (51, 50)

        # the ORM's connection sees what the thread committed, and the other way round
        async with engine.begin() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one() == 51
            await connection.execute(text("INSERT INTO t VALUES (2000)"))
        assert (await direct.on_sqlite(lambda c: c.execute("SELECT max(n) FROM t").fetchone()))[
            0
        ] == 2000
    assert not any(t.name == "vektor-sqlite" for t in threading.enumerate())


async def test_sqlite_thread_waits_for_the_orms_write_lock(tmp_path):
    async with _opened(f"sqlite+aiosqlite:///{tmp_path / 'lock.db'}") as (engine, direct):
        await direct.on_sqlite(lambda c: c.execute("CREATE TABLE t (n INTEGER)"))

        def insert(c: Any) -> None:
            with sqlite_transaction(c):
                c.execute("INSERT INTO t VALUES (1)")

        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (0)"))  # holds the write lock
            waiting = asyncio.ensure_future(direct.on_sqlite(insert))
            await asyncio.sleep(0.2)
            assert not waiting.done()
        await waiting
        rows = await direct.on_sqlite(lambda c: c.execute("SELECT n FROM t ORDER BY n").fetchall())
        assert [tuple(r) for r in rows] == [(0,), (1,)]


async def test_in_memory_sqlite_uses_the_pools_connection():
    async with _opened("sqlite+aiosqlite:///:memory:") as (_, direct):
        tables = await direct.on_sqlite(
            lambda c: c.execute("SELECT name FROM sqlite_master WHERE name = 'message'").fetchall()
        )
        assert len(tables) == 1  # the same database as the engine's, not a new empty one


async def test_a_held_sqlite_thread_runs_what_came_before_and_makes_the_rest_wait(
    tmp_path: Any,
) -> None:
    """`sqlite_turn`: while a restore writes a batch through the engine, the direct writes
    queued after it wait in line instead of for SQLite's lock."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'turn.db'}"
    async with _opened(url, tables=False) as (_, direct):
        order: list[str] = []

        def note(name: str) -> Any:
            return lambda connection: order.append(name)

        before = asyncio.ensure_future(direct.on_sqlite(note("before")))
        async with direct.sqlite_turn():
            assert order == ["before"]  # the turn came after it
            after = asyncio.ensure_future(direct.on_sqlite(note("after")))
            await asyncio.sleep(0.2)
            assert not after.done()
            order.append("holder")
        await asyncio.wait_for(after, 5)
        await before
        assert order == ["before", "holder", "after"]


async def test_a_turn_on_an_in_memory_database_holds_nothing() -> None:
    async with (
        _opened("sqlite+aiosqlite:///:memory:", tables=False) as (_, direct),
        direct.sqlite_turn(),
    ):
        assert await direct.on_sqlite(lambda connection: 1) == 1


async def test_units_waiting_together_commit_as_one_group_and_a_failure_stays_its_own(
    tmp_path: Any,
) -> None:
    """Units queued behind one another run in one transaction; a unit that fails makes the
    group run again one unit at a time, so only that unit fails and the rest are written."""
    async with _opened(f"sqlite+aiosqlite:///{tmp_path / 'group.db'}") as (engine, direct):

        def insert(n: int, c: Any) -> bool:
            with sqlite_transaction(c):
                c.execute("INSERT INTO t VALUES (?)", (n,))
            return bool(c.in_group)

        async def queued_behind_a_turn(numbers: list[int]) -> list[Any]:
            async with direct.sqlite_turn():
                units = [
                    asyncio.ensure_future(direct.on_sqlite(functools.partial(insert, n)))
                    for n in numbers
                ]
                await asyncio.sleep(0.1)
            return await asyncio.gather(*units, return_exceptions=True)

        await direct.on_sqlite(lambda c: c.execute("CREATE TABLE t (n INTEGER UNIQUE)"))
        assert await queued_behind_a_turn(list(range(10))) == [True] * 10

        outcomes = await queued_behind_a_turn([10, 11, 5, 12])  # 5 is there already
        assert outcomes[:2] == [False, False]  # run again alone, and written
        assert outcomes[3] is False
        assert isinstance(outcomes[2], sa_exc.IntegrityError)

        async with engine.connect() as connection:  # committed, as another connection sees
            rows = await connection.execute(text("SELECT n FROM t ORDER BY n"))
            assert [n for (n,) in rows] == [*range(13)]
