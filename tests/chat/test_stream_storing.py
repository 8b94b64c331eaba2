"""POST /chat/stream while the question is being stored: the upstream is asked meanwhile,
and a question that cannot be stored fails at once and keeps nothing."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiosqlite
import asyncpg

from tests.chat.test_stream import texts
from tests.conftest import scripted

REJECT_CONVERSATIONS = {
    "sqlite": [
        "CREATE TRIGGER reject_conversation BEFORE INSERT ON conversation "
        "BEGIN SELECT RAISE(ABORT, 'rejected by the test'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION reject_conversation() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'rejected by the test'; END $$",
        "CREATE TRIGGER reject_conversation BEFORE INSERT ON conversation "
        "FOR EACH ROW EXECUTE FUNCTION reject_conversation()",
    ],
}
ALLOW_CONVERSATIONS = {
    "sqlite": ["DROP TRIGGER reject_conversation"],
    "postgresql": [
        "DROP TRIGGER reject_conversation ON conversation",
        "DROP FUNCTION reject_conversation()",
    ],
}


async def _run_statements(engine, statements: list[str]) -> None:
    async with engine.begin() as connection:
        for statement in statements:
            await connection.exec_driver_sql(statement)


async def test_a_question_that_cannot_be_stored_fails_at_once_and_keeps_nothing(
    chat_harness, upstream
):
    """A new conversation's question is stored while the upstream is asked. When it cannot
    be stored, the request fails at once: the upstream request is abandoned, not waited
    for, and the deployment is not blamed for it."""
    chat = await chat_harness([scripted(upstream, "stall=3;chunks=2")])
    engine = chat.app.state.vektor.engine
    dialect = engine.dialect.name
    await _run_statements(engine, REJECT_CONVERSATIONS[dialect])
    try:
        started = asyncio.get_running_loop().time()
        response = await chat.client.post(
            "/chat/stream",
            headers=chat.headers,
            json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
        )
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        await _run_statements(engine, ALLOW_CONVERSATIONS[dialect])
    assert response.status_code == 500, response.text  # the database refused: the server's fault
    assert elapsed < 2.0  # not the upstream's 3 s stall
    assert (await chat.client.get("/chat/history", headers=chat.headers)).json() == []
    balancer = chat.app.state.vektor.pipeline.balancer
    assert [d["state"] for d in balancer.public_configs()] == ["healthy"]


@contextlib.asynccontextmanager
async def _writes_held(engine) -> AsyncIterator[None]:
    """Inserts into `conversation` wait until the block ends (reads do not)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        async with aiosqlite.connect(url.database, isolation_level=None) as sqlite:
            await sqlite.execute("BEGIN IMMEDIATE")  # the database's write lock
            try:
                yield
            finally:
                await sqlite.execute("COMMIT")
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    postgres = await asyncpg.connect(dsn)
    try:
        async with postgres.transaction():
            await postgres.execute("LOCK TABLE conversation IN EXCLUSIVE MODE")
            yield
    finally:
        await postgres.close()


async def test_the_upstream_is_asked_while_a_new_question_is_being_stored(chat_harness, upstream):
    """The question's transaction and the upstream's first token overlap: with the
    question's insert held up, the upstream is asked all the same, and the answer starts
    once the question is stored."""
    chat = await chat_harness([scripted(upstream, "chunks=3;text=a b c")])
    body = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
    async with _writes_held(chat.app.state.vektor.engine):
        answer = asyncio.create_task(chat.stream(body))
        for _ in range(300):
            if upstream.requests or answer.done():
                break
            await asyncio.sleep(0.01)
        asked_while_held = len(upstream.requests) == 1 and not answer.done()
    status, events, _ = await answer
    assert asked_while_held
    assert status == 200
    assert texts(events) == "a b c"
    history = (await chat.client.get("/chat/history", headers=chat.headers)).json()
    assert [c["message_count"] for c in history] == [2]
