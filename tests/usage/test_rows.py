"""One usage row for every answer that reached a deployment: /chat/stream finished,
cancelled or failed (in the answer's own transaction), /v1 streamed or not; the tokens are
the upstream's when it reports them, estimated otherwise; the cost is decimal."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from tests.conftest import parse_sse, scripted
from tests.support.usage_rows import usage_row
from tests.usage.helpers import usage_rows
from vektor.auth.models import User
from vektor.chat.models import Message
from vektor.usage.hot_repository import UsageHotRepository

QUESTION = [{"role": "user", "content": "hola"}]
PRICES = {"input_cost_per_mtok": 0.15, "output_cost_per_mtok": 2.5}


async def test_a_finished_chat_answer_has_its_row_with_the_upstreams_tokens(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=4;text=a", name="priced", **PRICES)])
    status, events, _ = await chat.stream({"model": "priced", "messages": QUESTION})
    assert status == 200
    usage_event = next(e for e in events if e["type"] == "usage")
    [row] = await usage_rows(chat.app)
    # the scripted upstream reports 11 prompt tokens and one completion token per piece
    assert (row.prompt_tokens, row.completion_tokens) == (11, 4)
    assert (usage_event["prompt_tokens"], usage_event["completion_tokens"]) == (11, 4)
    assert (row.model, row.deployment, row.source, row.finish_reason) == (
        "priced",
        "priced#0",
        "chat",
        "stop",
    )
    assert not row.estimated
    assert not row.cached
    assert row.api_key_id is None
    assert row.cost == (11 * Decimal("0.15") + 4 * Decimal("2.5")) / 1_000_000
    assert row.cost == Decimal("0.000011650")
    async with chat.app.state.vektor.sessionmaker() as session:
        answer = await session.scalar(select(Message).where(Message.role == "assistant"))
    assert answer is not None
    assert answer.prompt_tokens == row.prompt_tokens


async def test_failed_and_unreported_answers_have_rows(chat_harness, upstream):
    chat = await chat_harness(
        [
            scripted(upstream, "chunks=6;drop=2;text=abcd", name="dropping"),
            scripted(upstream, "chunks=3;nousage;text=abcdefgh", name="silent"),
        ]
    )
    status, events, _ = await chat.stream({"model": "dropping", "messages": QUESTION})
    assert status == 200
    assert any(e["type"] == "error" for e in events)
    status, silent_events, _ = await chat.stream({"model": "silent", "messages": QUESTION})
    assert status == 200
    text = "".join(e["content"] for e in silent_events if e["type"] == "delta")
    failed, silent = await usage_rows(chat.app)
    assert (failed.model, failed.finish_reason) == ("dropping", "error")
    assert (silent.model, silent.finish_reason, silent.estimated) == ("silent", "stop", True)
    # one token per four characters, rounded up
    assert len(text) > 8
    assert silent.completion_tokens == (len(text) + 3) // 4
    assert silent.prompt_tokens == (len("hola") + 3) // 4


async def test_a_cancelled_chat_answer_has_its_row(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=200;delay=0.05;text=w", name="slow")], live=True
    )
    body = {"model": "slow", "messages": QUESTION}
    raw, cancelled = "", False
    async with chat.client.stream(
        "POST", "/chat/stream", json=body, headers=chat.headers
    ) as response:
        async for text in response.aiter_text():
            raw += text
            if '"type":"delta"' in raw and not cancelled:
                message_id = parse_sse(raw)[0]["message_id"]
                cancel = await chat.client.post(
                    f"/chat/stream/{message_id}/cancel", headers=chat.headers
                )
                assert cancel.status_code == 202
                cancelled = True
    assert parse_sse(raw)[-1]["finish_reason"] == "cancelled"
    [row] = await usage_rows(chat.app)
    assert (row.finish_reason, row.source) == ("cancelled", "chat")
    assert 1 <= row.completion_tokens < 200


async def test_v1_answers_have_rows_with_their_api_key(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=3;text=x", name="v1m", **PRICES)])
    created = await chat.client.post(
        "/users/me/api-keys", json={"name": "ci"}, headers=chat.headers
    )
    key_id, key = uuid.UUID(created.json()["id"]), created.json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "v1m", "messages": QUESTION}
    plain = await chat.client.post("/v1/chat/completions", json=body, headers=headers)
    assert plain.status_code == 200
    streamed = await chat.client.post(
        "/v1/chat/completions", json={**body, "stream": True}, headers=chat.headers
    )
    assert streamed.status_code == 200
    assert streamed.text.endswith("data: [DONE]\n\n")
    first, second = await usage_rows(chat.app)
    assert (first.source, first.api_key_id, first.prompt_tokens, first.completion_tokens) == (
        "v1",
        key_id,
        11,
        3,
    )
    assert plain.json()["usage"]["completion_tokens"] == first.completion_tokens
    assert (second.source, second.api_key_id, second.completion_tokens) == ("v1", None, 3)
    assert first.cost == second.cost == Decimal("0.000009150")


async def test_a_refused_request_has_no_row(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "status=500", name="down")])
    status, _, _ = await chat.stream({"model": "down", "messages": QUESTION})
    assert status == 503
    status, _, _ = await chat.stream({"model": "nosuch", "messages": QUESTION})
    assert status == 404
    assert await usage_rows(chat.app) == []


async def test_deleting_the_account_keeps_its_rows_without_the_user(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=2", name="kept")])
    status, _, _ = await chat.stream({"model": "kept", "messages": QUESTION})
    assert status == 200
    [row] = await usage_rows(chat.app)
    assert row.user_id is not None
    async with chat.app.state.vektor.sessionmaker() as session, session.begin():
        await session.execute(delete(User).where(User.id == row.user_id))
    [kept] = await usage_rows(chat.app)
    assert (kept.id, kept.user_id, kept.completion_tokens) == (row.id, None, 2)


async def test_totals_equal_what_the_upstream_reported_over_many_answers(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=5;text=t", name="many", **PRICES)])
    answers = [await chat.stream({"model": "many", "messages": QUESTION}) for _ in range(3)]
    answers += await asyncio.gather(  # at once, within MAX_CONCURRENT_STREAMS
        *(chat.stream({"model": "many", "messages": QUESTION}) for _ in range(3))
    )
    assert all(status == 200 for status, _, _ in answers)
    reported = [next(e for e in events if e["type"] == "usage") for _, events, _ in answers]
    rows = await usage_rows(chat.app)
    assert len(rows) == 6
    assert sum(r.prompt_tokens for r in rows) == sum(u["prompt_tokens"] for u in reported) == 66
    assert sum(r.completion_tokens for r in rows) == sum(u["completion_tokens"] for u in reported)
    assert sum(r.cost for r in rows) == 6 * Decimal("0.000014150")


async def test_v1_rows_finishing_together_are_each_committed(app, alice):
    writes, user = UsageHotRepository(app.state.vektor.direct), uuid.UUID(alice["user"]["id"])
    rows = [usage_row(user, prompt_tokens=n) for n in range(60)]
    await asyncio.gather(*(writes.record(row) for row in rows))
    stored = {row.id: row.prompt_tokens for row in await usage_rows(app)}
    assert stored == {row.id: row.prompt_tokens for row in rows}


async def test_a_group_that_fails_fails_each_of_its_callers_and_writes_none(app, alice):
    writes, user = UsageHotRepository(app.state.vektor.direct), uuid.UUID(alice["user"]["id"])
    row = usage_row(user)
    duplicate = usage_row(user, id=row.id)  # the same primary key twice in one group
    outcomes = await asyncio.gather(
        writes.record(row), writes.record(duplicate), return_exceptions=True
    )
    assert all(isinstance(outcome, IntegrityError) for outcome in outcomes)
    assert await usage_rows(app) == []
    await writes.record(usage_row(user))  # the next group is written
    assert len(await usage_rows(app)) == 1
