"""The usage row every answer writes, at driver level (see `core/direct.py`).

A stored answer writes its row inside the chat repository's own unit of work (the same
transaction, on PostgreSQL the same statement), through `sqlite_insert` and `PG_INSERT_FROM_12`;
an answer that stores no conversation (/v1) writes it with `record`, committed with the
rows of other such answers finishing at the same time (on PostgreSQL over the one
connection `DirectDatabase` holds for such writes). The user id is
looked up in the statement, so an account deleted while it was answering leaves a row
whose user is NULL instead of failing the write.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from vektor.core.direct import (
    DirectDatabase,
    sqlite_time,
    sqlite_uuid,
    statement,
)
from vektor.core.sqlite_thread import sqlite_transaction
from vektor.core.waiters import fail_waiters
from vektor.usage.pricing import from_nanos, to_nanos

# Written out in full for each placement: no value or name is ever formatted into SQL.
_SQLITE_INSERT = (
    "INSERT INTO usage (id, user_id, api_key_id, model, deployment, prompt_tokens, "
    "completion_tokens, cost, cached, estimated, source, finish_reason, created_at) VALUES "
    '(?, (SELECT id FROM "user" WHERE id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'
)
_PG_INSERT = (
    "INSERT INTO usage (id, user_id, api_key_id, model, deployment, prompt_tokens, "
    "completion_tokens, cost, cached, estimated, source, finish_reason, created_at) VALUES "
    '($1, (SELECT id FROM "user" WHERE id = $2), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, '
    "$13)"
)
# The same with parameters $12 to $24, for a statement whose first eleven are taken.
PG_INSERT_FROM_12 = (
    "INSERT INTO usage (id, user_id, api_key_id, model, deployment, prompt_tokens, "
    "completion_tokens, cost, cached, estimated, source, finish_reason, created_at) VALUES "
    '($12, (SELECT id FROM "user" WHERE id = $13), $14, $15, $16, $17, $18, $19, $20, $21, '
    "$22, $23, $24)"
)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One answer's usage, as written."""

    id: uuid.UUID
    user_id: uuid.UUID
    api_key_id: uuid.UUID | None
    model: str
    deployment: str
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    cached: bool
    estimated: bool
    source: str
    finish_reason: str
    created_at: datetime

    def pg_parameters(self) -> tuple[object, ...]:
        """The values in column order, for asyncpg."""
        return (
            self.id,
            self.user_id,
            self.api_key_id,
            self.model,
            self.deployment,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost,
            self.cached,
            self.estimated,
            self.source,
            self.finish_reason,
            self.created_at,
        )

    def sqlite_parameters(self) -> tuple[object, ...]:
        """The values as SQLAlchemy stores them on SQLite (cost in nano-dollars)."""
        key = None if self.api_key_id is None else sqlite_uuid(self.api_key_id)
        return (
            sqlite_uuid(self.id),
            sqlite_uuid(self.user_id),
            key,
            self.model,
            self.deployment,
            self.prompt_tokens,
            self.completion_tokens,
            to_nanos(self.cost),
            int(self.cached),
            int(self.estimated),
            self.source,
            self.finish_reason,
            sqlite_time(self.created_at),
        )


def sqlite_insert(connection: sqlite3.Connection, row: UsageRow) -> None:
    """Insert the row inside the caller's SQLite transaction."""
    connection.execute(_SQLITE_INSERT, row.sqlite_parameters())


_USER_LIMITS = statement(
    "SELECT tokens_per_day, requests_per_day, budget_per_month FROM user_quota WHERE user_id = $1"
)
UserLimits = tuple[int | None, int | None, Decimal | None]


class QuotaHotRepository:
    """An admin's limits for a user, read again every few seconds for every user who
    answers (`limits.LimitBook`): one statement on the driver connection."""

    def __init__(self, database: DirectDatabase) -> None:
        self.database = database

    async def user_limits(self, user_id: uuid.UUID) -> UserLimits | None:
        """Tokens and requests per day and budget per month; None where not set, and no
        row when the admin set none."""

        def read(connection: sqlite3.Connection) -> UserLimits | None:
            row = connection.execute(_USER_LIMITS.sqlite, (sqlite_uuid(user_id),)).fetchone()
            if row is None:
                return None
            return row[0], row[1], None if row[2] is None else from_nanos(row[2])

        async def read_pg(connection: asyncpg.Connection) -> UserLimits | None:
            row = await connection.fetchrow(_USER_LIMITS.postgres, user_id)
            return None if row is None else (row[0], row[1], row[2])

        return await self.database.run(sqlite=read, postgres=read_pg)


MAX_GROUP = 256  # rows written in one transaction at most


class UsageHotRepository:
    """Usage rows of answers that store no conversation, committed in groups: the rows that
    arrive while a write is under way go together in the next transaction (one commit, on
    PostgreSQL one WAL flush, for all of them), and each caller returns once its own row is
    committed. A failed write fails every caller of that group, as it would have alone."""

    def __init__(self, database: DirectDatabase) -> None:
        self.database = database
        self._queued: list[tuple[UsageRow, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, row: UsageRow) -> None:
        """Write the row, committed when this returns."""
        future = asyncio.get_running_loop().create_future()
        self._queued.append((row, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_groups())
        await future

    async def _write_groups(self) -> None:
        try:
            while self._queued:
                group, self._queued = self._queued[:MAX_GROUP], self._queued[MAX_GROUP:]
                await _settle_group(group, self._insert([row for row, _ in group]))
        finally:
            self._writer = None

    async def _insert(self, rows: list[UsageRow]) -> None:
        def insert(connection: sqlite3.Connection) -> None:
            with sqlite_transaction(connection):
                connection.executemany(_SQLITE_INSERT, [r.sqlite_parameters() for r in rows])

        async def insert_pg(connection: asyncpg.Connection) -> None:
            # One statement: no transaction needed. Several: executemany is atomic.
            if len(rows) == 1:
                await connection.execute(_PG_INSERT, *rows[0].pg_parameters())
            else:
                await connection.executemany(_PG_INSERT, [r.pg_parameters() for r in rows])

        await self.database.run(sqlite=insert, postgres=insert_pg, held=True)


async def _settle_group(
    group: list[tuple[UsageRow, asyncio.Future[None]]], write: Awaitable[None]
) -> None:
    """Run the group's write and tell each waiting caller how it went."""
    try:
        await write
    except BaseException as exc:
        fail_waiters((future for _, future in group), exc)
        if not isinstance(exc, Exception):
            raise
        return
    for _, future in group:
        if not future.done():
            future.set_result(None)
