"""Database engine, sessions and the portable column types shared by every table."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import JSON, DateTime, MetaData, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class _RandomBlocks:
    """The operating system's random bytes read a block at a time: one system call for 256
    ids instead of one each (about 2 % of a chat answer's CPU). A forked child (a worker)
    starts with no block, never with its parent's."""

    SIZE = 4096

    def __init__(self) -> None:
        self.forget()
        os.register_at_fork(after_in_child=self.forget)

    def forget(self) -> None:
        self._lock = threading.Lock()
        self._block, self._at = b"", 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._at + count > len(self._block):
                self._block, self._at = os.urandom(self.SIZE), 0
            at = self._at
            self._at = at + count
            return self._block[at : at + count]


_RANDOM = _RandomBlocks()


def new_id() -> uuid.UUID:
    """A random primary key (a version 4 UUID)."""
    return uuid.UUID(bytes=_RANDOM.take(16), version=4)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that comes back aware on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store UTC; naive values are taken as UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """SQLite drops the zone on the way back: put UTC back."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# How long a SQLite writer waits for another connection's write lock.
SQLITE_BUSY_TIMEOUT_S = 10


def sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """Foreign keys on, WAL for concurrent readers, wait instead of failing on locks."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(
    url: str, *, echo: bool = False, pool_size: int = 20, max_overflow: int = 20
) -> AsyncEngine:
    """An async engine for SQLite (aiosqlite) or PostgreSQL (asyncpg)."""
    if url.startswith("sqlite"):
        # One connection, handed out in turn: SQLite has a single writer, and writers that
        # contend for its lock wait in sleep-and-retry steps of up to 100 ms. Queueing for
        # the connection instead keeps every transaction short and in order.
        engine = create_async_engine(
            url,
            echo=echo,
            hide_parameters=True,  # statement errors would otherwise quote the values bound
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
        )
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        # Connections beyond pool_size are opened and closed per checkout (a TCP and TLS
        # handshake each): size the pool for the concurrency one process sees.
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=5,
        pool_recycle=1800,
        connect_args={"timeout": 5, "command_timeout": 30},
    )
    _ping_when_idle(engine)
    return engine


# A connection back in the pool for longer than this is pinged before it is handed out.
# SQLAlchemy's pool_pre_ping pings on every checkout, three round trips with asyncpg (begin,
# ";", rollback): a third of a chat request's round trips. A connection in steady use
# needs none; one that broke while in use is reported as a disconnect, which invalidates
# the pool, and that request gets a 503.
IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("checked_in_at")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            raise sa_exc.DisconnectionError("idle connection did not answer a ping")

    event.listen(engine.sync_engine, "checkin", checked_in)
    event.listen(engine.sync_engine, "checkout", checked_out)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


# Failures to reach the database (refused, timed out, dropped, pool exhausted, the server
# shutting down or starting up) are a 503.
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    # the server has no connection slot left (max_connections): busy, not a bug of the request
    asyncpg.InsufficientResourcesError,
    # a connection dropped in the middle of an operation leaves asyncpg's protocol in a
    # state it reports as an internal error
    asyncpg.InternalClientError,
)


def is_database_down(exc: BaseException) -> bool:
    """Whether an error, or one it was raised from, means the database cannot be reached.

    SQLAlchemy wraps driver errors it does not classify (asyncpg's "the database system is
    shutting down") in a plain `DBAPIError`; the driver's own error is its cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DATABASE_DOWN_ERRORS):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False
