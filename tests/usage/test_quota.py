"""Quotas from the DEFAULT_* settings: checked before an answer starts, 429 with
Retry-After and `quota_exceeded` (OpenAI's shape on /v1), the crossing answer runs to its
end, counters built from the usage rows, and shared by instances with REDIS_URL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.conftest import REDIS_URL, scripted
from tests.support.usage_rows import usage_row
from tests.usage.helpers import usage_rows
from vektor.usage.hot_repository import UsageHotRepository

QUESTION = {"messages": [{"role": "user", "content": "hola"}]}


def _seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return (midnight - now).total_seconds()


async def test_tokens_per_day_refuses_once_used_up(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=3;text=q", name="q")], default_tokens_per_day=20
    )
    body = {"model": "q", **QUESTION}
    for _ in range(2):  # 14 tokens each: the second crosses 20 and runs to its end
        status, events, _ = await chat.stream(body)
        assert status == 200
        assert events[-1] == {"type": "done", "finish_reason": "stop", "_id": events[-1]["_id"]}
    refused = await chat.client.post("/chat/stream", json=body, headers=chat.headers)
    assert refused.status_code == 429
    assert refused.json() == {
        "detail": "Quota exceeded: tokens_per_day",
        "code": "quota_exceeded",
        "limit": "tokens_per_day",
    }
    assert 0 < int(refused.headers["Retry-After"]) <= _seconds_to_midnight() + 1
    v1 = await chat.client.post("/v1/chat/completions", json=body, headers=chat.headers)
    assert v1.status_code == 429
    assert "Retry-After" in v1.headers
    error = v1.json()["error"]
    assert (error["code"], error["param"]) == ("quota_exceeded", "tokens_per_day")
    rows = await usage_rows(chat.app)
    assert sum(r.prompt_tokens + r.completion_tokens for r in rows) == 28  # as reported
    quota = (await chat.client.get("/users/me/quota", headers=chat.headers)).json()
    assert quota["limits"] == {
        "tokens_per_day": 20,
        "requests_per_day": None,
        "budget_per_month": None,
    }
    assert quota["used"] == {
        "tokens_today": 28,
        "requests_today": 2,
        "cost_this_month": "0.000000000",
    }
    day = datetime.fromisoformat(quota["resets_at"]["day"])
    assert day.date() == datetime.now(UTC).date() + timedelta(days=1)
    assert datetime.fromisoformat(quota["resets_at"]["month"]).day == 1


async def test_requests_and_budget_quotas(chat_harness, upstream):
    prices = {"input_cost_per_mtok": 1, "output_cost_per_mtok": 1}
    chat = await chat_harness(
        [scripted(upstream, "chunks=3;text=b", name="b", **prices)],
        default_requests_per_day=3,
        default_budget_per_month="0.00002",
    )
    body = {"model": "b", **QUESTION}
    assert (await chat.stream(body))[0] == 200  # $0.000014
    assert (await chat.stream(body))[0] == 200  # $0.000028: crosses the budget
    refused = await chat.client.post("/chat/stream", json=body, headers=chat.headers)
    assert refused.status_code == 429
    assert refused.json()["limit"] == "budget_per_month"
    assert int(refused.headers["Retry-After"]) >= _seconds_to_midnight() - 2
    quota = (await chat.client.get("/users/me/quota", headers=chat.headers)).json()
    assert quota["limits"]["budget_per_month"] == "0.000020000"
    assert quota["used"]["cost_this_month"] == "0.000028000"
    assert len(await usage_rows(chat.app)) == 2  # a refused request has no row


async def test_requests_per_day(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=1", name="r")], default_requests_per_day="2"
    )
    body = {"model": "r", **QUESTION}
    assert [(await chat.stream(body))[0] for _ in range(3)] == [200, 200, 429]
    history = await chat.client.get("/chat/history", headers=chat.headers)
    assert history.status_code == 200
    assert len(history.json()) == 2  # the refused question was not stored


async def test_the_counters_are_built_from_the_usage_rows(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=1", name="c")], default_tokens_per_day=100
    )
    me = uuid.UUID((await chat.client.get("/users/me", headers=chat.headers)).json()["id"])
    writes = UsageHotRepository(chat.app.state.vektor.direct)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    await writes.record(usage_row(me, prompt_tokens=500, created_at=yesterday))  # not today
    assert (await chat.stream({"model": "c", **QUESTION}))[0] == 200
    await writes.record(usage_row(me, prompt_tokens=95, completion_tokens=0))
    # counters kept in memory since the first check: 12 + 95 is known only to the rows
    quota = (await chat.client.get("/users/me/quota", headers=chat.headers)).json()
    assert quota["used"]["tokens_today"] == 107
    fresh = await chat_harness(
        [scripted(upstream, "chunks=1", name="c")], default_tokens_per_day=100
    )
    refused = await fresh.client.post(
        "/chat/stream", json={"model": "c", **QUESTION}, headers=chat.headers
    )
    assert refused.status_code == 429  # a new process starts from the rows


async def test_instances_sharing_redis_see_each_others_answers(chat_harness, upstream, namespace):
    shared = {"default_tokens_per_day": 20, "redis_url": REDIS_URL, "redis_namespace": namespace}
    a = await chat_harness([scripted(upstream, "chunks=3", name="s")], **shared)
    b = await chat_harness([scripted(upstream, "chunks=3", name="s")], **shared)
    body = {"model": "s", **QUESTION}
    assert (await b.client.post("/chat/stream", json=body, headers=a.headers)).status_code == 200
    assert (await a.stream(body))[0] == 200  # 28 tokens now, 14 of them through A
    refused = await b.client.post("/chat/stream", json=body, headers=a.headers)
    assert refused.status_code == 429
    assert sum(r.prompt_tokens + r.completion_tokens for r in await usage_rows(a.app)) == (28)


async def _quota_keys(redis, namespace: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"{namespace}:quota:*")]


async def test_redis_counters_are_atomic_and_rebuilt_from_rows_after_a_loss(
    chat_harness, upstream, namespace
):
    from redis.asyncio import Redis

    shared = {"default_tokens_per_day": 30, "redis_url": REDIS_URL, "redis_namespace": namespace}
    a = await chat_harness([scripted(upstream, "chunks=3", name="s")], **shared)
    b = await chat_harness([scripted(upstream, "chunks=3", name="s")], **shared)
    body = {"model": "s", **QUESTION}
    me = (await a.client.get("/users/me", headers=a.headers)).json()["id"]
    redis = Redis.from_url(REDIS_URL)
    try:
        assert (await a.stream(body))[0] == 200
        assert (
            await b.client.post("/chat/stream", json=body, headers=a.headers)
        ).status_code == 200
        [key] = await _quota_keys(redis, namespace)
        assert uuid.UUID(me).hex in key.decode()
        # built at A's first check, then advanced by each answer, on either instance
        assert await redis.hgetall(key) == {b"tokens": b"28", b"requests": b"2", b"nanos": b"0"}
        assert 0 < await redis.ttl(key) <= 300

        await redis.delete(key)  # Redis lost its data
        assert (await a.stream(body))[0] == 200  # rebuilt from the rows: 28 < 30
        assert await redis.hgetall(key) == {b"tokens": b"42", b"requests": b"3", b"nanos": b"0"}
        refused = await b.client.post("/chat/stream", json=body, headers=a.headers)
        assert refused.status_code == 429
        assert refused.json()["limit"] == "tokens_per_day"
    finally:
        await redis.aclose()
    rows = await usage_rows(a.app)
    assert sum(r.prompt_tokens + r.completion_tokens for r in rows) == 42
