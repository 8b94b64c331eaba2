"""The driver's own connection, for the few statements every chat request runs.

On the hot path SQLAlchemy costs more than the statements themselves: through aiosqlite
every cursor, execute, close, commit and rollback is a hop to the connection's thread (eight
for a two-statement transaction, while SQLite's one connection is held), and an ORM Session
adds its own bookkeeping. `DirectDatabase` checks a connection out of the engine's pool as
usual and runs a unit of work on the driver connection beneath it:

- SQLite: one function run in the connection's own thread, the whole transaction in one hop;
- PostgreSQL: asyncpg itself, with its prepared-statement cache; single statements need no
  BEGIN or COMMIT.

Errors come out as SQLAlchemy's (`OperationalError` and so on), so callers and the app's
error handlers treat them as before; a connection that broke is invalidated in the pool.
Everything else keeps the ORM.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vektor.core.database import is_database_down

T = TypeVar("T")


def sqlite_time(value: datetime) -> str:
    """A timestamp as SQLAlchemy stores it on SQLite: naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_time_value(text: str) -> datetime:
    """A timestamp read back from SQLite, aware."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sqlite_uuid(value: uuid.UUID) -> str:
    """A UUID as SQLAlchemy stores it on SQLite."""
    return value.hex


@contextmanager
def sqlite_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock at once; committed, or rolled back."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.rollback()
        raise
    connection.commit()


class DirectDatabase:
    """Units of work on the driver connection under one of the engine's pooled ones."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"

    async def on_sqlite(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` in the SQLite connection's thread, in one hop."""
        async with self.engine.connect() as connection:
            driver = await _driver(connection)
            try:
                # aiosqlite runs every call through `_execute` in the thread that owns the
                # sqlite3 connection (`_conn`); the public methods each add one hop.
                return await driver._execute(lambda: work(driver._conn))  # type: ignore[no-any-return]
            except sqlite3.Error as exc:
                raise _sqlite_error(exc) from exc

    async def on_postgres(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `work(connection)` with the asyncpg connection."""
        async with self.engine.connect() as connection:
            driver = await _driver(connection)
            try:
                return await work(driver)
            except BaseException as exc:
                broken = (
                    driver.is_closed()
                    or is_database_down(exc)
                    or isinstance(exc, asyncpg.exceptions.OperatorInterventionError)
                )
                if broken or not isinstance(exc, Exception):
                    # a query cut off half way (cancelled, or the server gone) leaves the
                    # connection in a state the next user must not inherit
                    await connection.invalidate()
                if broken:
                    raise sa_exc.OperationalError(
                        None, None, exc, connection_invalidated=True
                    ) from exc
                if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
                    raise sa_exc.IntegrityError(None, None, exc) from exc
                if isinstance(exc, asyncpg.PostgresError):
                    raise sa_exc.DBAPIError(None, None, exc) from exc
                raise


async def _driver(connection: AsyncConnection) -> Any:
    raw = await connection.get_raw_connection()
    return raw.driver_connection


def _sqlite_error(exc: sqlite3.Error) -> sa_exc.DBAPIError:
    if isinstance(exc, sqlite3.IntegrityError):
        return sa_exc.IntegrityError(None, None, exc)
    if isinstance(exc, sqlite3.OperationalError):
        return sa_exc.OperationalError(None, None, exc)
    return sa_exc.DBAPIError(None, None, exc)
