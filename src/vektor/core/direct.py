"""The driver's own connection, for the few statements every chat request runs.

On the hot path SQLAlchemy costs more than the statements themselves: through aiosqlite
every cursor, execute, close, commit and rollback is a hop to the connection's thread (eight
for a two-statement transaction, while SQLite's one connection is held), and an ORM Session
adds its own bookkeeping. `DirectDatabase` runs a unit of work on a driver connection:

- SQLite: one function run in the thread of a connection of its own (`SqliteThread`), the
  whole transaction in one hop. Units of work queue in that thread and run back to back:
  a connection checked out of the engine's one-connection pool would stay held while the
  event loop got round to handing it back, about twice as long as the work itself under
  load, and every chat request queued behind that. The units waiting together are
  committed as one group (`core/sqlite_thread.py`). An in-memory database, which a second
  connection would not see, uses the pool's connection;
- PostgreSQL: asyncpg itself, under a connection checked out of the engine's pool, with its
  prepared-statement cache; single statements need no BEGIN or COMMIT. A writer whose
  statements are many and small (the usage rows of /v1 answers) runs them on one pooled
  connection kept checked out (`on_held_postgres`): the checkout cost as much as the insert.

A hot repository hands `run` both units of work and the one for the database runs; a
statement the two dialects share is written once with `statement`.

Errors come out as SQLAlchemy's (`OperationalError` and so on), so callers and the app's
error handlers treat them as before; a connection that broke is invalidated in the pool.
Everything else keeps the ORM.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vektor.core.database import is_database_down
from vektor.core.sqlite_thread import SqliteThread

T = TypeVar("T")
_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement in each dialect's placeholders: PostgreSQL's `$n`, SQLite's `?n`."""

    postgres: str
    sqlite: str


def statement(sql: str) -> Statement:
    """A statement written once with `$n` placeholders; SQLite's numbered `?n` bind the same
    parameters in the same order, a repeated `$n` included."""
    return Statement(postgres=sql, sqlite=_PLACEHOLDER.sub(r"?\1", sql))


def sqlite_time(value: datetime) -> str:
    """A timestamp as SQLAlchemy stores it on SQLite: naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_time_value(text: str) -> datetime:
    """A timestamp read back from SQLite, aware."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sqlite_uuid(value: uuid.UUID) -> str:
    """A UUID as SQLAlchemy stores it on SQLite."""
    return value.hex


def _sqlite_file(engine: AsyncEngine) -> str | None:
    """The database file a second connection would open too; None when in memory."""
    url = engine.url
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if url.query.get("mode") == "memory" or url.query.get("uri"):
        return None
    return database


class DirectDatabase:
    """Units of work on a driver connection: SQLite's own thread, or asyncpg from the pool."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._sqlite_file = _sqlite_file(engine) if self.is_sqlite else None
        self._sqlite_thread: SqliteThread | None = None
        # see `on_held_postgres`; one of the pool's `db_pool_size` connections while held
        self._held: tuple[AsyncConnection, asyncpg.Connection] | None = None
        self._held_lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Stop SQLite's thread, if it was started; hand the held connection back."""
        if self._sqlite_thread is not None:
            thread, self._sqlite_thread = self._sqlite_thread, None
            await thread.aclose()
        async with self._held_lock:
            if self._held is not None:
                (held, _), self._held = self._held, None
                await held.close()

    async def run(
        self,
        *,
        sqlite: Callable[[sqlite3.Connection], T],
        postgres: Callable[[asyncpg.Connection], Awaitable[T]],
        held: bool = False,
    ) -> T:
        """Run the unit of work written for this database: `sqlite` in SQLite's thread, or
        `postgres` with the asyncpg connection (`held`: the one `on_held_postgres` keeps)."""
        if self.is_sqlite:
            return await self.on_sqlite(sqlite)
        if held:
            return await self.on_held_postgres(postgres)
        return await self.on_postgres(postgres)

    @asynccontextmanager
    async def sqlite_turn(self) -> AsyncIterator[None]:
        """While writing to SQLite through the engine: the direct writes wait in line
        (`SqliteThread.hold`) rather than for SQLite's lock. Nothing on PostgreSQL, or on
        an in-memory SQLite, which has no thread of its own."""
        if self._sqlite_file is None:
            yield
            return
        if self._sqlite_thread is None:
            self._sqlite_thread = SqliteThread(self._sqlite_file)
        async with self._sqlite_thread.hold():
            yield

    async def on_sqlite(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` in a SQLite connection's thread, in one hop."""
        if self._sqlite_file is not None:
            if self._sqlite_thread is None:
                self._sqlite_thread = SqliteThread(self._sqlite_file)
            try:
                return await self._sqlite_thread.run(work)
            except sqlite3.Error as exc:
                raise _sqlite_error(exc) from exc
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
            return await _on(connection, await _driver(connection), work)

    async def on_held_postgres(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `work(connection)` on one pooled connection this object keeps checked out
        until `aclose` (or until it breaks), one unit of work at a time: for a writer
        that runs many small statements in turn, each without a checkout of its own."""
        async with self._held_lock:
            if self._held is None:
                connection = await self.engine.connect()
                self._held = connection, await _driver(connection)
            held, driver = self._held
            try:
                return await _on(held, driver, work)
            finally:
                if held.invalidated:
                    self._held = None
                    await held.close()


async def _on(
    connection: AsyncConnection,
    driver: asyncpg.Connection,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
) -> T:
    """`work` with the connection's asyncpg connection (`driver`); its errors as
    SQLAlchemy's, and a connection left unusable invalidated."""
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
            raise sa_exc.OperationalError(None, None, exc, connection_invalidated=True) from exc
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
