"""Whose API key is this? Every /v1 request asks, so the answer takes one trip to the
database on the driver connection (`DirectDatabase`), like the session check of chat."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime

import asyncpg

from vektor.auth.session_check import TOUCH_INTERVAL  # a key's use is written as seldom
from vektor.core.direct import (
    DirectDatabase,
    sqlite_time,
    sqlite_time_value,
    sqlite_transaction,
)
from vektor.core.security import hash_token

_SQLITE_KEY = (
    'SELECT k.id, k.user_id, k.expires_at, k.last_used_at FROM api_key k JOIN "user" u '
    "ON u.id = k.user_id WHERE k.key_hash = ?"
)
_SQLITE_TOUCH = "UPDATE api_key SET last_used_at = ? WHERE id = ?"
_PG_KEY = (
    'SELECT k.id, k.user_id, k.expires_at, k.last_used_at FROM api_key k JOIN "user" u '
    "ON u.id = k.user_id WHERE k.key_hash = $1"
)
_PG_TOUCH = "UPDATE api_key SET last_used_at = $1 WHERE id = $2"


def _stale(last_used: datetime | None, now: datetime) -> bool:
    return last_used is None or now - last_used >= TOUCH_INTERVAL


class KeyCheck:
    """Live (unexpired, unrevoked) keys and their owners; use is recorded."""

    def __init__(self, database: DirectDatabase) -> None:
        self.database = database

    async def owner(self, key: str, now: datetime) -> uuid.UUID | None:
        """The user owning a live key, or None."""
        digest = hash_token(key)
        if self.database.is_sqlite:

            def check(connection: sqlite3.Connection) -> uuid.UUID | None:
                row = connection.execute(_SQLITE_KEY, (digest,)).fetchone()
                if row is None:
                    return None
                key_id, user_id, expires, last_used = row
                if expires is not None and sqlite_time_value(expires) <= now:
                    return None
                if _stale(None if last_used is None else sqlite_time_value(last_used), now):
                    with sqlite_transaction(connection):
                        connection.execute(_SQLITE_TOUCH, (sqlite_time(now), key_id))
                return uuid.UUID(hex=user_id)

            return await self.database.on_sqlite(check)

        async def check_pg(connection: asyncpg.Connection) -> uuid.UUID | None:
            row = await connection.fetchrow(_PG_KEY, digest)
            if row is None:
                return None
            key_id, user_id, expires, last_used = row
            if expires is not None and expires <= now:
                return None
            if _stale(last_used, now):
                await connection.execute(_PG_TOUCH, now, key_id)
            return uuid.UUID(str(user_id))

        return await self.database.on_postgres(check_pg)
