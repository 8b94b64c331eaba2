"""Whose API key is this? Every /v1 request asks, so the answer takes one trip to the
database on the driver connection (`DirectDatabase`), not the ORM, like the session check
of chat (`SessionHotRepository`): through aiosqlite every cursor, execute, close and commit
is a hop to SQLite's thread, and an ORM Session adds its own bookkeeping, which cost more
than the query itself. Creating, listing and revoking keys use the ORM (`ApiKeyRepository`).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from vektor.auth.hot_repository import (  # a key's use is written as seldom
    SQLITE_BATCH,
    TOUCH_INTERVAL,
)
from vektor.core.direct import (
    DirectDatabase,
    sqlite_time,
    sqlite_time_value,
    statement,
)
from vektor.core.security import hash_token
from vektor.core.sqlite_thread import sqlite_transaction

_KEY = statement(
    'SELECT k.id, k.user_id, k.expires_at, k.last_used_at FROM api_key k JOIN "user" u '
    "ON u.id = k.user_id WHERE k.key_hash = $1 AND NOT u.disabled"
)
_TOUCH = statement("UPDATE api_key SET last_used_at = $1 WHERE id = $2")
_LIVE_AMONG = (
    'SELECT k.key_hash FROM api_key k JOIN "user" u ON u.id = k.user_id '
    "WHERE (k.expires_at IS NULL OR k.expires_at > $1) AND NOT u.disabled AND k.key_hash "
)
_LIVE_AMONG_PG = _LIVE_AMONG + "= ANY($2::text[])"
_LIVE_AMONG_SQLITE = _LIVE_AMONG.replace("$1", "?") + "IN ({})"


def _stale(last_used: datetime | None, now: datetime) -> bool:
    return last_used is None or now - last_used >= TOUCH_INTERVAL


class ApiKeyHotRepository:
    """Live (unexpired, unrevoked) keys and their owners; use is recorded."""

    def __init__(self, database: DirectDatabase) -> None:
        self.database = database

    async def owner(self, key: str, now: datetime) -> tuple[uuid.UUID, uuid.UUID] | None:
        """The user owning a live key and the key's id, or None (also when the owner's
        account is disabled)."""
        found = await self.live_key(hash_token(key), now)
        return None if found is None else (found[0], found[1])

    async def live_key(
        self, digest: str, now: datetime
    ) -> tuple[uuid.UUID, uuid.UUID, datetime | None] | None:
        """The owner, id and expiry of the live key with this hash, or None."""

        def check(
            connection: sqlite3.Connection,
        ) -> tuple[uuid.UUID, uuid.UUID, datetime | None] | None:
            row = connection.execute(_KEY.sqlite, (digest,)).fetchone()
            if row is None:
                return None
            key_id, user_id, expires, last_used = row
            expiry = None if expires is None else sqlite_time_value(expires)
            if expiry is not None and expiry <= now:
                return None
            if _stale(None if last_used is None else sqlite_time_value(last_used), now):
                with sqlite_transaction(connection):
                    connection.execute(_TOUCH.sqlite, (sqlite_time(now), key_id))
            return uuid.UUID(hex=user_id), uuid.UUID(hex=key_id), expiry

        async def check_pg(
            connection: asyncpg.Connection,
        ) -> tuple[uuid.UUID, uuid.UUID, datetime | None] | None:
            row = await connection.fetchrow(_KEY.postgres, digest)
            if row is None:
                return None
            key_id, user_id, expires, last_used = row
            if expires is not None and expires <= now:
                return None
            if _stale(last_used, now):
                await connection.execute(_TOUCH.postgres, now, key_id)
            return uuid.UUID(str(user_id)), uuid.UUID(str(key_id)), expires

        return await self.database.run(sqlite=check, postgres=check_pg)

    async def live_among(self, key_hashes: Sequence[str], now: datetime) -> set[str]:
        """Which of these keys (by hash) are still live: one statement for every open
        WebSocket of the process that signed in with a key."""
        if not key_hashes:
            return set()

        def check(connection: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(key_hashes), SQLITE_BATCH):
                chunk = list(key_hashes[start : start + SQLITE_BATCH])
                marks = ",".join("?" * len(chunk))
                query = _LIVE_AMONG_SQLITE.format(marks)
                rows = connection.execute(query, [sqlite_time(now), *chunk]).fetchall()
                found.update(row[0] for row in rows)
            return found

        async def check_pg(connection: asyncpg.Connection) -> set[str]:
            rows = await connection.fetch(_LIVE_AMONG_PG, now, list(key_hashes))
            return {row[0] for row in rows}

        return await self.database.run(sqlite=check, postgres=check_pg)
