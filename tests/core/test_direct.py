"""The hot-path writes on the driver connection: what they store reads back through the ORM
exactly as if the ORM had written it, ownership holds, errors come out as SQLAlchemy's, and
a connection that broke is not handed out again."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text, update

from tests.conftest import login, register
from tests.support.usage_rows import usage_row
from vektor.auth.hot_repository import TOUCH_INTERVAL, SessionHotRepository
from vektor.auth.models import Device, UserSession
from vektor.chat.hot_repository import ChatHotRepository, NewMessage
from vektor.chat.models import Conversation, Message
from vektor.core.database import is_database_down, new_id
from vektor.core.direct import DirectDatabase, statement
from vektor.core.security import decode_access_token


def _writes(app: FastAPI) -> ChatHotRepository:
    writes: ChatHotRepository = app.state.vektor.pipeline.store.writes
    return writes


async def _rows(app: FastAPI, conversation_id: uuid.UUID) -> tuple[Any, list[Message]]:
    async with app.state.vektor.sessionmaker() as session:
        conversation = (
            await session.execute(select(Conversation).where(Conversation.id == conversation_id))
        ).scalar_one_or_none()
        messages = (
            (
                await session.execute(
                    select(Message)
                    .where(Message.conversation_id == conversation_id)
                    .order_by(Message.seq)
                )
            )
            .scalars()
            .all()
        )
    return conversation, list(messages)


async def _user_id_of(app: FastAPI, name: str) -> uuid.UUID:
    async with app.state.vektor.engine.connect() as connection:
        found = await connection.execute(
            text('SELECT id FROM "user" WHERE username_key = :name'), {"name": name}
        )
        value = found.scalar_one()
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


async def test_stored_rows_read_back_through_the_orm(app: FastAPI, client: Any) -> None:
    writes = _writes(app)
    await register(client, "alice")
    await register(client, "bob")
    alice, bob = await _user_id_of(app, "alice"), await _user_id_of(app, "bob")
    conversation_id = new_id()
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    first = [
        NewMessage(id=new_id(), role="system", content="Be brief."),
        NewMessage(id=new_id(), role="user", content='¿Qué "tal"? 😀 \'; DROP TABLE message;--'),
    ]
    await writes.start_conversation(
        conversation_id=conversation_id,
        user_id=alice,
        title="A title",
        model="m1",
        messages=first,
        at=at,
    )
    conversation, messages = await _rows(app, conversation_id)
    assert (conversation.user_id, conversation.title, conversation.model) == (
        alice,
        "A title",
        "m1",
    )
    assert conversation.message_count == 2
    assert conversation.created_at == at
    assert conversation.updated_at == at
    assert [(m.id, m.role, m.content) for m in messages] == [
        (m.id, m.role, m.content) for m in first
    ]
    assert all(m.created_at == at and m.model is None and m.prompt_tokens is None for m in messages)

    # Someone else's conversation: nothing is written.
    later = at + timedelta(seconds=5)
    stranger = [NewMessage(id=new_id(), role="user", content="mine now")]
    assert (
        await writes.continue_conversation(
            conversation_id=conversation_id, user_id=bob, model="m2", messages=stranger, at=later
        )
        is None
    )
    assert (
        await writes.add_answer(
            conversation_id=conversation_id,
            user_id=bob,
            messages=stranger,
            usage=usage_row(bob),
            at=later,
        )
        is False
    )
    conversation, messages = await _rows(app, conversation_id)
    assert (conversation.message_count, conversation.model, len(messages)) == (2, "m1", 2)

    # The owner continues: the earlier messages come back in order, the model is recorded.
    question = [NewMessage(id=new_id(), role="user", content="And then?")]
    earlier = await writes.continue_conversation(
        conversation_id=conversation_id, user_id=alice, model="m2", messages=question, at=later
    )
    assert earlier == [(m.role, m.content) for m in first]
    answer = [
        NewMessage(id=new_id(), role="tool", content='{"tool": "t"}'),
        NewMessage(
            id=new_id(),
            role="assistant",
            content="Then this.",
            model="m2",
            finish_reason="stop",
            prompt_tokens=12,
            completion_tokens=3,
        ),
    ]
    assert await writes.add_answer(
        conversation_id=conversation_id,
        user_id=alice,
        messages=answer,
        usage=usage_row(alice),
        at=later,
    )
    conversation, messages = await _rows(app, conversation_id)
    assert (conversation.message_count, conversation.model) == (5, "m2")
    assert conversation.updated_at == later
    assert conversation.created_at == at
    assert [m.id for m in messages] == [m.id for m in [*first, *question, *answer]]
    last = messages[-1]
    assert (last.model, last.finish_reason, last.prompt_tokens, last.completion_tokens) == (
        "m2",
        "stop",
        12,
        3,
    )

    # Gone: the answer is not stored, and says so.
    async with app.state.vektor.sessionmaker() as session, session.begin():
        await session.delete(conversation)
    assert not await writes.add_answer(
        conversation_id=conversation_id,
        user_id=alice,
        messages=answer[1:],
        usage=usage_row(alice),
        at=later,
    )
    assert (
        await writes.continue_conversation(
            conversation_id=conversation_id, user_id=alice, model="m2", messages=question, at=later
        )
        is None
    )


async def test_a_failed_write_leaves_nothing_and_is_sqlalchemys_error(
    app: FastAPI, client: Any
) -> None:
    writes = _writes(app)
    await register(client, "alice")
    alice = await _user_id_of(app, "alice")
    conversation_id, at = new_id(), datetime.now(UTC)
    start = functools.partial(
        writes.start_conversation,
        conversation_id=conversation_id,
        user_id=alice,
        title="t",
        model="m",
        at=at,
    )
    await start(messages=[NewMessage(id=new_id(), role="user", content="one")])
    with pytest.raises(sa_exc.IntegrityError):  # the same conversation id again
        await start(messages=[NewMessage(id=new_id(), role="user", content="two")])
    # the same message id twice in one answer: the bump before it is rolled back too
    twice = NewMessage(id=new_id(), role="assistant", content="x")
    with pytest.raises(sa_exc.IntegrityError):
        await writes.add_answer(
            conversation_id=conversation_id,
            user_id=alice,
            messages=[twice, twice],
            usage=usage_row(alice),
            at=at,
        )
    conversation, messages = await _rows(app, conversation_id)
    assert conversation.message_count == 1
    assert [m.content for m in messages] == ["one"]
    # and the connection is fine afterwards
    assert await writes.add_answer(
        conversation_id=conversation_id,
        user_id=alice,
        messages=[twice],
        usage=usage_row(alice),
        at=at,
    )


async def test_session_check(app: FastAPI, client: Any) -> None:
    await register(client, "alice")
    await register(client, "bob")
    tokens = await login(client, "alice")
    settings = app.state.vektor.settings
    claims = decode_access_token(
        tokens["access_token"],
        secret_key=settings.secret_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    check: SessionHotRepository = app.state.vektor.session_check
    now = datetime.now(UTC)
    assert await check.live(claims.session_id, claims.user_id, now)
    bob = await _user_id_of(app, "bob")
    assert not await check.live(claims.session_id, bob, now)
    assert not await check.live(new_id(), claims.user_id, now)

    # Activity is written once the last write is older than TOUCH_INTERVAL, on the session
    # and on its device.
    long_ago = now - TOUCH_INTERVAL - timedelta(seconds=1)
    async with app.state.vektor.sessionmaker() as session, session.begin():
        await session.execute(
            update(UserSession)
            .where(UserSession.id == claims.session_id)
            .values(last_seen_at=long_ago)
        )
    assert await check.live(claims.session_id, claims.user_id, now)
    async with app.state.vektor.sessionmaker() as session:
        user_session = await session.get(UserSession, claims.session_id)
        assert user_session is not None
        assert user_session.last_seen_at == now
        device = await session.get(Device, user_session.device_pk)
        assert device is not None
        assert device.last_seen_at == now

    response = await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code in (200, 204)
    assert not await check.live(claims.session_id, claims.user_id, now)


def _postgres_direct(app: FastAPI) -> DirectDatabase:
    """The app's driver-level database; the test is skipped on SQLite."""
    database: DirectDatabase = app.state.vektor.direct
    if database.is_sqlite:
        pytest.skip("a PostgreSQL connection")
    return database


async def _own_pid(connection: Any) -> int:
    pid: int = await connection.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_a_broken_postgres_connection_is_a_disconnect_and_is_not_reused(
    app: FastAPI,
) -> None:
    database = _postgres_direct(app)

    async def killed(connection: Any) -> None:
        pid = await connection.fetchval("SELECT pg_backend_pid()")
        async with app.state.vektor.engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await connection.fetchval("SELECT 1")

    with pytest.raises(sa_exc.OperationalError) as caught:
        await database.on_postgres(killed)
    assert caught.value.connection_invalidated
    assert is_database_down(caught.value)
    assert await database.on_postgres(_own_pid) > 0  # a live connection again

    # A query cut off by cancellation: that connection is dropped, not handed out again.
    started = asyncio.Event()
    pids: list[int] = []

    async def slow(connection: Any) -> None:
        pids.append(await _own_pid(connection))
        started.set()
        await connection.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(database.on_postgres(slow))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.wait_for(database.on_postgres(_own_pid), 3) != pids[0]


async def test_the_held_connection_is_kept_replaced_when_broken_and_handed_back(
    app: FastAPI,
) -> None:
    database = _postgres_direct(app)

    async def in_turn(connection: Any) -> int:
        await connection.execute("SELECT pg_sleep(0.05)")  # a second at once would fail
        return await _own_pid(connection)

    first = await database.on_held_postgres(_own_pid)
    # units of work on it run one at a time, each on the same connection
    assert (
        await asyncio.gather(*(database.on_held_postgres(in_turn) for _ in range(5))) == [first] * 5
    )
    async with app.state.vektor.engine.connect() as other:
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    with pytest.raises(sa_exc.OperationalError) as caught:
        await database.on_held_postgres(_own_pid)
    assert caught.value.connection_invalidated
    second = await database.on_held_postgres(_own_pid)
    assert second != first

    pool = app.state.vektor.engine.pool
    held = pool.checkedout()
    await database.aclose()
    assert pool.checkedout() == held - 1  # back in the pool


def test_statement_written_once_binds_alike_on_sqlite() -> None:
    both = statement("SELECT $2, $1, $2")
    assert both.postgres == "SELECT $2, $1, $2"
    assert both.sqlite == "SELECT ?2, ?1, ?2"
    with sqlite3.connect(":memory:") as connection:
        assert connection.execute(both.sqlite, ("a", "b")).fetchone() == ("b", "a", "b")


def test_a_server_out_of_connection_slots_counts_as_down() -> None:
    """PostgreSQL at max_connections refuses a new connection: a 503, not a 500."""
    import asyncpg

    from vektor.core.database import is_database_down

    refused = asyncpg.TooManyConnectionsError("sorry, too many clients already")
    assert is_database_down(refused)
    assert not is_database_down(ValueError("a bug"))
