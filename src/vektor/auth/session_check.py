"""Is an access token's session still live? Every authenticated chat request asks, so the
answer takes one trip to the database on the driver connection (`DirectDatabase`); routes
that need the user's row use `get_principal` and the ORM instead."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timedelta

import asyncpg

from vektor.core.direct import (
    DirectDatabase,
    sqlite_time,
    sqlite_time_value,
    sqlite_transaction,
    sqlite_uuid,
)

# Activity is written at most this often per session, not on every request.
TOUCH_INTERVAL = timedelta(seconds=60)

_SQLITE_LIVE = (
    'SELECT s.device_pk, s.last_seen_at FROM user_session s JOIN "user" u ON u.id = s.user_id '
    "WHERE s.id = ? AND s.user_id = ? AND s.revoked_at IS NULL"
)
_SQLITE_TOUCH_SESSION = "UPDATE user_session SET last_seen_at = ? WHERE id = ?"
_SQLITE_TOUCH_DEVICE = "UPDATE device SET last_seen_at = ? WHERE id = ?"
_PG_LIVE = (
    'SELECT s.device_pk, s.last_seen_at FROM user_session s JOIN "user" u ON u.id = s.user_id '
    "WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL"
)
_PG_TOUCH = (
    "WITH s AS (UPDATE user_session SET last_seen_at = $1 WHERE id = $2) "
    "UPDATE device SET last_seen_at = $1 WHERE id = $3"
)


class SessionCheck:
    """Live sessions, with their activity recorded at most every TOUCH_INTERVAL."""

    def __init__(self, database: DirectDatabase) -> None:
        self.database = database

    async def live(self, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> bool:
        """Whether the session is the user's and not revoked (and the user still exists)."""
        if self.database.is_sqlite:
            key = (sqlite_uuid(session_id), sqlite_uuid(user_id))

            def check(connection: sqlite3.Connection) -> bool:
                row = connection.execute(_SQLITE_LIVE, key).fetchone()
                if row is None:
                    return False
                if now - sqlite_time_value(row[1]) >= TOUCH_INTERVAL:
                    with sqlite_transaction(connection):
                        connection.execute(_SQLITE_TOUCH_SESSION, (sqlite_time(now), key[0]))
                        connection.execute(_SQLITE_TOUCH_DEVICE, (sqlite_time(now), row[0]))
                return True

            return await self.database.on_sqlite(check)

        async def check_pg(connection: asyncpg.Connection) -> bool:
            row = await connection.fetchrow(_PG_LIVE, session_id, user_id)
            if row is None:
                return False
            if now - row[1] >= TOUCH_INTERVAL:
                await connection.execute(_PG_TOUCH, now, session_id, row[0])
            return True

        return await self.database.on_postgres(check_pg)
