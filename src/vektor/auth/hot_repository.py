"""Is an access token's session still live? Every authenticated chat request asks, so the
answer takes one trip to the database on the driver connection (`DirectDatabase`), not the
ORM: through aiosqlite every cursor, execute, close and commit is a hop to SQLite's thread,
and an ORM Session adds its own bookkeeping, which cost more than the query itself. Routes
that need the user's row use `get_principal` and the ORM instead."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from vektor.core.direct import (
    DirectDatabase,
    sqlite_time,
    sqlite_time_value,
    sqlite_uuid,
    statement,
)
from vektor.core.sqlite_thread import sqlite_transaction

# Activity is written at most this often per session, not on every request.
TOUCH_INTERVAL = timedelta(seconds=60)

_LIVE = statement(
    'SELECT s.device_pk, s.last_seen_at FROM user_session s JOIN "user" u ON u.id = s.user_id '
    "WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND NOT u.disabled"
)
_TOUCH_SESSION = statement("UPDATE user_session SET last_seen_at = $1 WHERE id = $2")
_TOUCH_DEVICE = statement("UPDATE device SET last_seen_at = $1 WHERE id = $2")
_LIVE_AMONG = (
    'SELECT s.id FROM user_session s JOIN "user" u ON u.id = s.user_id '
    "WHERE s.revoked_at IS NULL AND NOT u.disabled AND s.id "
)
_LIVE_AMONG_PG = _LIVE_AMONG + "= ANY($1::uuid[])"
_LIVE_AMONG_SQLITE = _LIVE_AMONG + "IN ({})"
SQLITE_BATCH = 500  # bound parameters per statement, well under SQLite's limit
# PostgreSQL touches both rows in one statement, one round trip.
_PG_TOUCH = (
    "WITH s AS (UPDATE user_session SET last_seen_at = $1 WHERE id = $2) "
    "UPDATE device SET last_seen_at = $1 WHERE id = $3"
)


class SessionHotRepository:
    """Live sessions, with their activity recorded at most every TOUCH_INTERVAL."""

    def __init__(self, database: DirectDatabase) -> None:
        self.database = database

    async def live(self, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> bool:
        """Whether the session is the user's and not revoked (and the user still exists and
        is not disabled)."""
        key = (sqlite_uuid(session_id), sqlite_uuid(user_id))

        def check(connection: sqlite3.Connection) -> bool:
            row = connection.execute(_LIVE.sqlite, key).fetchone()
            if row is None:
                return False
            if now - sqlite_time_value(row[1]) >= TOUCH_INTERVAL:
                with sqlite_transaction(connection):
                    connection.execute(_TOUCH_SESSION.sqlite, (sqlite_time(now), key[0]))
                    connection.execute(_TOUCH_DEVICE.sqlite, (sqlite_time(now), row[0]))
            return True

        async def check_pg(connection: asyncpg.Connection) -> bool:
            row = await connection.fetchrow(_LIVE.postgres, session_id, user_id)
            if row is None:
                return False
            if now - row[1] >= TOUCH_INTERVAL:
                await connection.execute(_PG_TOUCH, now, session_id, row[0])
            return True

        return await self.database.run(sqlite=check, postgres=check_pg)

    async def live_among(self, session_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these sessions are still live (not revoked, their user still there): one
        statement for every open WebSocket of the process."""
        if not session_ids:
            return set()

        def check(connection: sqlite3.Connection) -> set[uuid.UUID]:
            found: set[uuid.UUID] = set()
            for start in range(0, len(session_ids), SQLITE_BATCH):
                chunk = [sqlite_uuid(s) for s in session_ids[start : start + SQLITE_BATCH]]
                marks = ",".join("?" * len(chunk))
                rows = connection.execute(_LIVE_AMONG_SQLITE.format(marks), chunk).fetchall()
                found.update(uuid.UUID(hex=row[0]) for row in rows)
            return found

        async def check_pg(connection: asyncpg.Connection) -> set[uuid.UUID]:
            rows = await connection.fetch(_LIVE_AMONG_PG, list(session_ids))
            return {uuid.UUID(str(row[0])) for row in rows}

        return await self.database.run(sqlite=check, postgres=check_pg)


_MCP_POOLS = statement('SELECT mcp_pools FROM "user" WHERE id = $1')


class McpPoolsHotRepository:
    """The MCP pools a user may use, read for answers that offer tools and gateway
    requests: one statement on the driver connection. `live_cache.LivePools` remembers the
    answer until the user's revocation epoch moves, which an admin's change does."""

    def __init__(self, database: DirectDatabase) -> None:
        self.database = database

    async def allowed(self, user_id: uuid.UUID) -> frozenset[str] | None:
        """The pools the user may use; None when every pool is allowed (or no such user)."""

        def read(connection: sqlite3.Connection) -> object:
            row = connection.execute(_MCP_POOLS.sqlite, (sqlite_uuid(user_id),)).fetchone()
            return None if row is None else row[0]

        async def read_pg(connection: asyncpg.Connection) -> object:
            return await connection.fetchval(_MCP_POOLS.postgres, user_id)

        return _pools(await self.database.run(sqlite=read, postgres=read_pg))


def _pools(stored: object) -> frozenset[str] | None:
    """A stored JSON list (text on both drivers unless decoded) as a set; NULL is None."""
    if isinstance(stored, str | bytes):
        stored = json.loads(stored)
    if not isinstance(stored, list):
        return None
    return frozenset(str(name) for name in stored)


_PROFILE = statement(
    'SELECT id, email, username, avatar_url, created_at, is_admin FROM "user" WHERE id = $1'
)


class UserHotRepository:
    """The profile a user reads (`GET /users/me`), in one statement on the driver
    connection: an ORM Session's begin, get and commit cost more than the rest of that
    request."""

    def __init__(self, database: DirectDatabase) -> None:
        self.database = database

    async def profile(self, user_id: uuid.UUID) -> dict[str, object] | None:
        """id, email, username, avatar_url, created_at, is_admin; None if there is no user."""

        def read(connection: sqlite3.Connection) -> dict[str, object] | None:
            row = connection.execute(_PROFILE.sqlite, (sqlite_uuid(user_id),)).fetchone()
            if row is None:
                return None
            return {
                "id": uuid.UUID(hex=row[0]),
                "email": row[1],
                "username": row[2],
                "avatar_url": row[3],
                "created_at": sqlite_time_value(row[4]),
                "is_admin": bool(row[5]),
            }

        async def read_pg(connection: asyncpg.Connection) -> dict[str, object] | None:
            row = await connection.fetchrow(_PROFILE.postgres, user_id)
            return None if row is None else dict(row)

        return await self.database.run(sqlite=read, postgres=read_pg)
