"""The usage row is in the answer's own transaction on /chat, and committed before the end
of a /v1 answer is sent: a process killed right after the answer keeps it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from tests.conftest import register, scripted
from tests.support.processes import serve_vektor, stop, vektor_env, wait_healthy
from tests.support.upstream import free_port
from tests.support.usage_rows import usage_row
from tests.usage.helpers import usage_rows
from vektor.auth.models import User
from vektor.chat.hot_repository import ChatHotRepository, NewMessage
from vektor.core.database import new_id


async def _user(app: FastAPI, name: str) -> User:
    async with app.state.vektor.sessionmaker() as session:
        user = await session.scalar(select(User).where(User.username == name))
        assert user is not None
        return user


async def test_the_row_shares_the_answers_transaction(app: FastAPI, client) -> None:
    writes = ChatHotRepository(app.state.vektor.direct)
    await register(client, "alice")
    alice = (await _user(app, "alice")).id
    conversation_id, at = new_id(), datetime.now(UTC)
    question = [NewMessage(id=new_id(), role="user", content="q")]
    await writes.start_conversation(
        conversation_id=conversation_id,
        user_id=alice,
        title="t",
        model="m",
        messages=question,
        at=at,
    )
    twice = NewMessage(id=new_id(), role="assistant", content="x")
    with pytest.raises(sa_exc.IntegrityError):  # the answer fails: its row goes with it
        await writes.add_answer(
            conversation_id=conversation_id,
            user_id=alice,
            messages=[twice, twice],
            usage=usage_row(alice),
            at=at,
        )
    assert await usage_rows(app) == []
    row = usage_row(alice, prompt_tokens=7)
    assert await writes.add_answer(
        conversation_id=conversation_id, user_id=alice, messages=[twice], usage=row, at=at
    )
    [stored] = await usage_rows(app)
    assert (stored.id, stored.prompt_tokens, stored.cost) == (row.id, 7, row.cost)
    # the conversation deleted meanwhile: no answer, but the tokens were spent
    gone = usage_row(alice)
    assert not await writes.add_answer(
        conversation_id=new_id(), user_id=alice, messages=[], usage=gone, at=at
    )
    assert [r.id for r in await usage_rows(app)] == [row.id, gone.id]


def _sign_in(client: httpx.Client) -> dict[str, str]:
    account = {"email": "kill@example.com", "username": "kill", "password": "long password"}
    assert client.post("/auth/register", json=account).status_code == 201
    login = client.post("/auth/login", data={"username": "kill", "password": "long password"})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_v1_row_survives_a_kill_right_after_the_answer(tmp_path, upstream, stream):
    (tmp_path / "config").mkdir()
    models = [scripted(upstream, "chunks=3;text=k", name="durable")]
    (tmp_path / "config" / "model_configs.json").write_text(json.dumps(models))
    port = free_port()
    env = vektor_env(tmp_path, SECRET_KEY="Zx8qqqqqqqqqqKp2-w7VbN4mT_a9LcR5s-usagekill")
    process = serve_vektor(port, env, tmp_path)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health/ready", process, deadline_s=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            headers = _sign_in(client)
            body = {"model": "durable", "messages": [{"role": "user", "content": "hi"}]}
            if stream:
                with client.stream(
                    "POST", "/v1/chat/completions", json={**body, "stream": True}, headers=headers
                ) as response:
                    for line in response.iter_lines():
                        if line == "data: [DONE]":
                            os.killpg(process.pid, signal.SIGKILL)
                            break
            else:
                answer = client.post("/v1/chat/completions", json=body, headers=headers)
                os.killpg(process.pid, signal.SIGKILL)
                assert answer.status_code == 200
        process.wait(timeout=10)
    finally:
        stop(process)
    with sqlite3.connect(tmp_path / "vektor.db") as database:
        rows = database.execute(
            "SELECT source, prompt_tokens, completion_tokens, finish_reason FROM usage"
        ).fetchall()
    assert rows == [("v1", 11, 3, "stop")]
