"""The writes of every chat request, each in one trip to the database.

The question is stored before the answer starts and the answer when it ends; both sit on
the path of every streamed answer, so they bypass the ORM and run on the driver connection
(`DirectDatabase`): on SQLite a whole transaction in one hop to the connection's thread
(through aiosqlite it was eight hops while SQLite's one connection was held), on PostgreSQL
a single statement (a data-modifying WITH) that bumps the conversation and inserts the
messages; SQLAlchemy's share of the CPU went from 23 % to 5 %. Reads, search, deletes and
everything else go through the ORM (`ConversationRepository`).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from vektor.core.direct import DirectDatabase, sqlite_time, sqlite_uuid
from vektor.core.sqlite_thread import sqlite_transaction
from vektor.usage.hot_repository import PG_INSERT_FROM_12, UsageRow, sqlite_insert


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store; the usage fields are an answer's."""

    id: uuid.UUID
    role: str
    content: str
    model: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


# --- SQLite: `?` parameters, UUIDs as hex and times as SQLAlchemy's text, one hop each ---

_SQLITE_INSERT_CONVERSATION = (
    "INSERT INTO conversation (id, user_id, title, model, message_count, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_INSERT_MESSAGE = (
    "INSERT INTO message (id, conversation_id, role, content, model, finish_reason, "
    "prompt_tokens, completion_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_OWNED = "SELECT 1 FROM conversation WHERE id = ? AND user_id = ?"
_SQLITE_HISTORY = "SELECT role, content FROM message WHERE conversation_id = ? ORDER BY seq"
_SQLITE_BUMP = (
    "UPDATE conversation SET message_count = message_count + ?, updated_at = ?, "
    "model = coalesce(?, model) WHERE id = ? AND user_id = ?"
)

# --- PostgreSQL: one statement each; the messages arrive as arrays, in order ---

# $1 conversation, $2 user, $3 time, $4-$10 the messages' columns (arrays, in order);
# starting: $11 title, $12 model; appending: $11 the model to record, or NULL.
_PG_INSERT_MESSAGES = (
    "INSERT INTO message (id, conversation_id, role, content, model, finish_reason, "
    "prompt_tokens, completion_tokens, created_at) "
    "SELECT m.id, c.id, m.role, m.content, m.model, m.finish_reason, m.prompt_tokens, "
    "m.completion_tokens, $3 FROM c, unnest($4::uuid[], $5::text[], $6::text[], $7::text[], "
    "$8::text[], $9::int[], $10::int[]) WITH ORDINALITY "
    "AS m(id, role, content, model, finish_reason, prompt_tokens, completion_tokens, n) "
    "ORDER BY m.n"
)
_PG_NEW_CONVERSATION = (
    "WITH c AS (INSERT INTO conversation (id, user_id, title, model, message_count, "
    "created_at, updated_at) VALUES ($1, $2, $11, $12, cardinality($4::uuid[]), $3, $3) "
    "RETURNING id) "
)
_PG_BUMP_CONVERSATION = (
    "WITH c AS (UPDATE conversation SET "
    "message_count = message_count + cardinality($4::uuid[]), updated_at = $3, "
    "model = coalesce($11, model) WHERE id = $1 AND user_id = $2 RETURNING id) "
)
# Constants joined once at import; no value is ever formatted into SQL.
_PG_START = _PG_NEW_CONVERSATION + _PG_INSERT_MESSAGES
_PG_APPEND = _PG_BUMP_CONVERSATION + _PG_INSERT_MESSAGES
# An answer: the bump, its usage row ($12 onwards; written even when the conversation was
# deleted meanwhile) and its messages, in one statement.
_PG_USAGE = ", u AS (" + PG_INSERT_FROM_12 + ") "
_PG_ANSWER = _PG_BUMP_CONVERSATION.rstrip() + _PG_USAGE + _PG_INSERT_MESSAGES
_PG_HISTORY = (
    "SELECT m.role, m.content FROM conversation c LEFT JOIN message m "
    "ON m.conversation_id = c.id WHERE c.id = $1 AND c.user_id = $2 ORDER BY m.seq"
)


def _sqlite_rows(
    conversation_id: uuid.UUID, messages: Sequence[NewMessage], at: datetime
) -> list[tuple[object, ...]]:
    conversation, created = sqlite_uuid(conversation_id), sqlite_time(at)
    return [
        (
            sqlite_uuid(m.id),
            conversation,
            m.role,
            m.content,
            m.model,
            m.finish_reason,
            m.prompt_tokens,
            m.completion_tokens,
            created,
        )
        for m in messages
    ]


def _pg_arrays(messages: Sequence[NewMessage]) -> list[list[object]]:
    return [
        [m.id for m in messages],
        [m.role for m in messages],
        [m.content for m in messages],
        [m.model for m in messages],
        [m.finish_reason for m in messages],
        [m.prompt_tokens for m in messages],
        [m.completion_tokens for m in messages],
    ]


def _inserted(status: str) -> int:
    """The row count of an `INSERT 0 n` status."""
    return int(status.rsplit(" ", 1)[-1])


class ChatHotRepository:
    """Storing questions and answers. Each method hands `DirectDatabase.run` its SQLite
    and its PostgreSQL unit of work; the parameters are shaped inside them, for the
    dialect in use only."""

    def __init__(self, database: DirectDatabase) -> None:
        self.database = database

    async def start_conversation(
        self,
        *,
        conversation_id: uuid.UUID,
        user_id: uuid.UUID,
        title: str,
        model: str,
        messages: Sequence[NewMessage],
        at: datetime,
    ) -> None:
        """A new conversation with its first messages."""

        def start(connection: sqlite3.Connection) -> None:
            created = sqlite_time(at)
            conversation = (sqlite_uuid(conversation_id), sqlite_uuid(user_id), title, model)
            rows = _sqlite_rows(conversation_id, messages, at)
            with sqlite_transaction(connection):
                connection.execute(
                    _SQLITE_INSERT_CONVERSATION, (*conversation, len(messages), created, created)
                )
                connection.executemany(_SQLITE_INSERT_MESSAGE, rows)

        async def start_pg(connection: asyncpg.Connection) -> None:
            arrays = _pg_arrays(messages)
            await connection.execute(_PG_START, conversation_id, user_id, at, *arrays, title, model)

        await self.database.run(sqlite=start, postgres=start_pg)

    async def continue_conversation(
        self,
        *,
        conversation_id: uuid.UUID,
        user_id: uuid.UUID,
        model: str,
        messages: Sequence[NewMessage],
        at: datetime,
    ) -> list[tuple[str, str]] | None:
        """Add messages to the user's conversation; its earlier (role, content) pairs, or
        None when it is not the user's (nothing is written then)."""

        def append(connection: sqlite3.Connection) -> list[tuple[str, str]] | None:
            key, owner = sqlite_uuid(conversation_id), sqlite_uuid(user_id)
            rows = _sqlite_rows(conversation_id, messages, at)
            with sqlite_transaction(connection):
                if connection.execute(_SQLITE_OWNED, (key, owner)).fetchone() is None:
                    return None
                history = connection.execute(_SQLITE_HISTORY, (key,)).fetchall()
                connection.executemany(_SQLITE_INSERT_MESSAGE, rows)
                connection.execute(
                    _SQLITE_BUMP, (len(messages), sqlite_time(at), model, key, owner)
                )
                return [(role, content) for role, content in history]

        async def append_pg(connection: asyncpg.Connection) -> list[tuple[str, str]] | None:
            found = await connection.fetch(_PG_HISTORY, conversation_id, user_id)
            if not found:
                return None
            arrays = _pg_arrays(messages)
            status = await connection.execute(
                _PG_APPEND, conversation_id, user_id, at, *arrays, model
            )
            if _inserted(status) == 0:
                return None  # deleted in between
            return [(row[0], row[1]) for row in found if row[0] is not None]

        return await self.database.run(sqlite=append, postgres=append_pg)

    async def add_answer(
        self,
        *,
        conversation_id: uuid.UUID,
        user_id: uuid.UUID,
        messages: Sequence[NewMessage],
        usage: UsageRow,
        at: datetime,
    ) -> bool:
        """Store an answer (and the tool messages before it) in the user's conversation,
        and its usage row in the same transaction; False when the conversation no longer
        exists (the usage row is written all the same)."""

        def add(connection: sqlite3.Connection) -> bool:
            key, owner = sqlite_uuid(conversation_id), sqlite_uuid(user_id)
            rows = _sqlite_rows(conversation_id, messages, at)
            with sqlite_transaction(connection):
                sqlite_insert(connection, usage)
                bump = (len(messages), sqlite_time(at), None, key, owner)
                if connection.execute(_SQLITE_BUMP, bump).rowcount != 1:
                    return False
                connection.executemany(_SQLITE_INSERT_MESSAGE, rows)
                return True

        async def add_pg(connection: asyncpg.Connection) -> bool:
            arrays = _pg_arrays(messages)
            status = await connection.execute(
                _PG_ANSWER, conversation_id, user_id, at, *arrays, None, *usage.pg_parameters()
            )
            return _inserted(status) > 0

        return await self.database.run(sqlite=add, postgres=add_pg)
