"""The response cache in memory (SPEC §3.11): which requests it serves, what a hit looks
like (the same events in the same pieces, stored, with its usage row), its scope, the
quotas, the /v1 header, emptying it, its metrics, and single flight. Upstream calls are
counted at the scripted upstream."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.conftest import bearer, login, parse_sse, register, scripted
from tests.monitoring.test_system import make_admin
from tests.usage.helpers import usage_rows
from vektor.answers.cache import CachedAnswer, MemoryResponseStore

QUESTION = [{"role": "user", "content": "¿Qué hora es?"}]
CACHED = {"cache_ttl_s": 60}


def cache_count(result: str) -> float:
    """vektor_cache_requests_total{result} in this process."""
    return REGISTRY.get_sample_value("vektor_cache_requests_total", {"result": result}) or 0.0


def texts(events: list[dict[str, Any]]) -> list[str]:
    """The delta pieces of an answer, in order."""
    return [e["content"] for e in events if e["type"] == "delta"]


def start_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The `start` event."""
    return next(e for e in events if e["type"] == "start")


async def cache_app(chat_harness, upstream, **overrides: Any):
    """An app with the cache on and models: `c` (cached per user), `g` (cached for every
    user), `plain` (not cached), `broken` (cached, fails mid-answer)."""
    models = [
        scripted(upstream, "chunks=4;text=uno dos tres cuatro", name="c", **CACHED),
        scripted(upstream, "chunks=3;text=x y z", name="g", cache_scope="global", **CACHED),
        scripted(upstream, "chunks=2;text=p q", name="plain"),
        scripted(upstream, "chunks=6;drop=2;text=a", name="broken", **CACHED),
    ]
    return await chat_harness(models, **{"response_cache": True, **overrides})


async def test_a_repeated_question_at_temperature_0_is_replayed_piece_by_piece(
    chat_harness, upstream
):
    chat = await cache_app(chat_harness, upstream)
    body = {"model": "c", "messages": QUESTION, "temperature": 0}
    hits, misses = cache_count("hit"), cache_count("miss")
    status, first, _ = await chat.stream(body)
    assert status == 200
    assert "cached" not in start_of(first)
    status, second, _ = await chat.stream(body)
    assert status == 200
    assert start_of(second)["cached"] is True
    assert len(upstream.requests) == 1
    # the same pieces as the original stream, not one block of text
    assert texts(second) == texts(first) == ["uno", " dos", " tres", " cuatro"]
    assert [e["type"] for e in second] == [e["type"] for e in first]
    usage = [next(e for e in events if e["type"] == "usage") for events in (first, second)]
    assert {k: v for k, v in usage[0].items() if k != "_id"} == {
        k: v for k, v in usage[1].items() if k != "_id"
    }
    assert second[-1]["finish_reason"] == "stop"
    assert (cache_count("hit") - hits, cache_count("miss") - misses) == (1, 1)
    # stored in the history like any answer
    history = (await chat.client.get("/chat/history", headers=chat.headers)).json()
    assert len(history) == 2
    conversation_id = start_of(second)["conversation_id"]
    stored = await chat.client.get(f"/chat/history/{conversation_id}", headers=chat.headers)
    messages = stored.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == "uno dos tres cuatro"


async def test_a_hit_has_a_usage_row_with_its_tokens_at_no_cost(chat_harness, upstream):
    prices = {"input_cost_per_mtok": 1, "output_cost_per_mtok": 2}
    models = [scripted(upstream, "chunks=3;text=a b c", name="priced", **CACHED, **prices)]
    chat = await chat_harness(models, response_cache=True)
    body = {"model": "priced", "messages": QUESTION, "temperature": 0}
    for _ in range(2):
        assert (await chat.stream(body))[0] == 200
    fresh, cached = await usage_rows(chat.app)
    assert (fresh.cached, cached.cached) == (False, True)
    assert fresh.cost == Decimal("0.000017")  # 11 prompt + 3 completion tokens
    assert cached.cost == 0
    assert (cached.prompt_tokens, cached.completion_tokens) == (11, 3)
    assert (cached.model, cached.deployment, cached.finish_reason) == ("priced", "priced#0", "stop")


async def test_bypass_rules(chat_harness, upstream):
    chat = await cache_app(chat_harness, upstream)
    bypassed = cache_count("bypass")

    async def upstream_calls(body: dict[str, Any], headers: dict[str, str] | None = None) -> int:
        before = len(upstream.requests)
        status, events, _ = await chat.stream(body, {**chat.headers, **(headers or {})})
        assert status == 200
        assert events[-1]["type"] == "done"
        return len(upstream.requests) - before

    at_zero = {"model": "c", "messages": QUESTION, "temperature": 0}
    # no temperature, or a temperature above 0: not cached
    assert [await upstream_calls({"model": "c", "messages": QUESTION}) for _ in range(2)] == [1, 1]
    warm = {**at_zero, "temperature": 0.7}
    assert [await upstream_calls(warm) for _ in range(2)] == [1, 1]
    assert cache_count("bypass") - bypassed == 4
    # `"cache": true` asks for it at any temperature
    assert [await upstream_calls({**warm, "cache": True}) for _ in range(2)] == [1, 0]
    # at temperature 0: `"cache": false` and Cache-Control: no-cache bypass it
    assert await upstream_calls(at_zero) == 1
    assert await upstream_calls({**at_zero, "cache": False}) == 1
    assert await upstream_calls(at_zero, {"Cache-Control": "no-cache"}) == 1
    assert await upstream_calls(at_zero, {"Cache-Control": "max-age=0, No-Store"}) == 1
    assert await upstream_calls(at_zero) == 0
    # a model without cache_ttl_s is never cached, and counts nothing
    counted = sum(cache_count(r) for r in ("hit", "miss", "bypass"))
    plain = {"model": "plain", "messages": QUESTION, "temperature": 0, "cache": True}
    assert [await upstream_calls(plain) for _ in range(2)] == [1, 1]
    assert sum(cache_count(r) for r in ("hit", "miss", "bypass")) == counted


async def test_the_cache_is_off_unless_turned_on(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=2", name="c", **CACHED)])
    body = {"model": "c", "messages": QUESTION, "temperature": 0}
    for _ in range(2):
        status, events, _ = await chat.stream(body)
        assert status == 200
        assert "cached" not in start_of(events)
    assert len(upstream.requests) == 2


async def test_errors_and_tool_calls_are_never_kept(chat_harness, upstream):
    chat = await cache_app(chat_harness, upstream)
    broken = {"model": "broken", "messages": QUESTION, "temperature": 0}
    for _ in range(2):
        status, events, _ = await chat.stream(broken)
        assert status == 200
        assert events[-1]["finish_reason"] == "error"
        assert "cached" not in start_of(events)
    assert len(upstream.requests) == 2
    tooling = await chat_harness(
        [scripted(upstream, "tool=lookup", name="t", **CACHED)], response_cache=True
    )
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    body = {"model": "t", "messages": QUESTION, "temperature": 0, "tools": [tool]}
    for _ in range(2):
        response = await tooling.client.post(
            "/v1/chat/completions", json=body, headers=tooling.headers
        )
        assert response.status_code == 200
        assert response.json()["choices"][0]["finish_reason"] == "tool_calls"
        assert response.headers["X-Vektor-Cache"] == "miss"
    assert len(upstream.requests) == 4


async def test_a_cancelled_answer_is_not_kept(chat_harness, upstream):
    models = [scripted(upstream, "chunks=100;delay=0.05;text=w", name="slow", **CACHED)]
    chat = await chat_harness(models, response_cache=True, live=True)
    body = {"model": "slow", "messages": QUESTION, "temperature": 0}
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
    # its only reader left: the flight stopped the upstream request
    async with asyncio.timeout(10):
        while upstream.disconnects < 1:
            await asyncio.sleep(0.02)
    assert upstream.completed == 0
    again = await chat.client.post(
        "/v1/chat/completions", json={**body, "max_tokens": 2048}, headers=chat.headers
    )
    assert again.status_code == 200
    assert again.headers["X-Vektor-Cache"] == "miss"  # asked again: nothing was kept
    assert len(upstream.requests) == 2


async def test_user_scope_never_serves_another_user_global_scope_does(chat_harness, upstream):
    chat = await cache_app(chat_harness, upstream)
    await register(chat.client, "bob")
    bob = bearer(await login(chat.client, "bob"))
    for model, bob_hits in (("c", False), ("g", True)):
        body = {"model": model, "messages": QUESTION, "temperature": 0}
        before = len(upstream.requests)
        assert (await chat.stream(body))[0] == 200
        status, events, _ = await chat.stream(body, bob)
        assert status == 200
        assert start_of(events).get("cached", False) is bob_hits
        assert len(upstream.requests) - before == (1 if bob_hits else 2)
    # Alice's own repeat of her user-scoped answer is a hit
    status, events, _ = await chat.stream({"model": "c", "messages": QUESTION, "temperature": 0})
    assert start_of(events)["cached"] is True


async def test_the_stored_history_is_part_of_the_request(chat_harness, upstream):
    chat = await cache_app(chat_harness, upstream)
    body = {"model": "c", "messages": QUESTION, "temperature": 0}
    _, first, _ = await chat.stream(body)
    conversation = start_of(first)["conversation_id"]
    # the same question inside that conversation: the model sees the history too
    _, follow_up, _ = await chat.stream({**body, "conversation_id": conversation})
    assert "cached" not in start_of(follow_up)
    assert len(upstream.requests) == 2
    assert len(upstream.requests[1]["messages"]) == 3
    # other max_tokens: another request
    _, capped, _ = await chat.stream({**body, "max_tokens": 50})
    assert "cached" not in start_of(capped)
    assert len(upstream.requests) == 3


async def test_v1_answers_say_hit_or_miss(chat_harness, upstream):
    chat = await cache_app(chat_harness, upstream)
    body = {"model": "c", "messages": QUESTION, "temperature": 0}
    answers = []
    for _ in range(2):
        response = await chat.client.post("/v1/chat/completions", json=body, headers=chat.headers)
        assert response.status_code == 200
        answers.append(response)
    assert [r.headers["X-Vektor-Cache"] for r in answers] == ["miss", "hit"]
    assert answers[0].json()["choices"] == answers[1].json()["choices"]
    assert answers[1].json()["usage"]["completion_tokens"] == 4
    streamed = {**body, "stream": True}
    async with chat.client.stream(
        "POST", "/v1/chat/completions", json=streamed, headers=chat.headers
    ) as response:
        raw = (await response.aread()).decode()
    assert response.headers["X-Vektor-Cache"] == "hit"
    chunks = [line for line in raw.split("\n\n") if line.startswith("data: {")]
    assert len(chunks) == 6  # the role, four pieces, the finish
    assert raw.endswith("data: [DONE]\n\n")
    assert len(upstream.requests) == 1
    rows = await usage_rows(chat.app)
    assert [(r.source, r.cached) for r in rows] == [("v1", False), ("v1", True), ("v1", True)]
    plain = await chat.client.post(
        "/v1/chat/completions", json={**body, "model": "plain"}, headers=chat.headers
    )
    assert plain.headers["X-Vektor-Cache"] == "miss"


async def test_hits_count_against_the_requests_quota_not_the_tokens_one(chat_harness, upstream):
    chat = await cache_app(
        chat_harness, upstream, default_tokens_per_day=20, default_requests_per_day=3
    )
    body = {"model": "c", "messages": QUESTION, "temperature": 0}
    # 15 tokens fresh; the hits would cross 20 tokens if they counted
    assert [(await chat.stream(body))[0] for _ in range(4)] == [200, 200, 200, 429]
    quota = (await chat.client.get("/users/me/quota", headers=chat.headers)).json()
    assert quota["used"] == {
        "tokens_today": 15,
        "requests_today": 3,
        "cost_this_month": "0.000000000",
    }
    assert len(upstream.requests) == 1


async def test_admins_empty_the_cache(chat_harness, upstream):
    chat = await cache_app(chat_harness, upstream)
    body = {"model": "c", "messages": QUESTION, "temperature": 0}
    assert (await chat.stream(body))[0] == 200
    refused = await chat.client.delete("/admin/cache", headers=chat.headers)
    assert refused.status_code == 403
    assert (await chat.client.delete("/admin/cache")).status_code == 401
    admin = await make_admin(chat.app, chat.client)
    emptied = await chat.client.delete("/admin/cache", headers=admin)
    assert emptied.status_code == 200
    assert emptied.json() == {"removed": 1}
    _, events, _ = await chat.stream(body)
    assert "cached" not in start_of(events)
    assert len(upstream.requests) == 2
    assert (await chat.client.delete("/admin/cache", headers=admin)).json() == {"removed": 1}


async def test_identical_requests_together_make_one_upstream_call(chat_harness, upstream):
    models = [scripted(upstream, "chunks=8;delay=0.05;text=s", name="slow", **CACHED)]
    chat = await chat_harness(models, response_cache=True)
    await register(chat.client, "bob")
    bob = bearer(await login(chat.client, "bob"))
    body = {"model": "slow", "messages": QUESTION, "temperature": 0}
    hits = cache_count("hit")
    answers = await asyncio.gather(*(chat.stream(body) for _ in range(4)), chat.stream(body, bob))
    assert all(status == 200 for status, _, _ in answers)
    # Alice's four make one call; Bob (another user, user scope) his own
    assert len(upstream.requests) == 2
    alice = [events for _, events, _ in answers[:4]]
    assert sorted(start_of(e).get("cached", False) for e in alice) == [False, True, True, True]
    assert all(texts(e) == ["s"] + [" s"] * 7 for e in alice)
    assert cache_count("hit") - hits == 3
    rows = await usage_rows(chat.app)
    assert sorted(r.cached for r in rows) == [False, False, True, True, True]
    # the shared answer was kept
    _, later, _ = await chat.stream(body)
    assert start_of(later)["cached"] is True
    assert len(upstream.requests) == 2


async def test_a_follower_keeps_the_answer_when_the_first_client_cancels(chat_harness, upstream):
    models = [scripted(upstream, "chunks=20;delay=0.03;text=f", name="slow", **CACHED)]
    chat = await chat_harness(models, response_cache=True)
    body = {"model": "slow", "messages": QUESTION, "temperature": 0}
    jobs = chat.app.state.vektor.jobs

    async def cancel_the_first() -> None:
        while len(jobs.running) < 2:
            await asyncio.sleep(0.01)
        first = next(iter(jobs.running))
        jobs.cancel(first)

    first, second, _ = await asyncio.gather(
        chat.stream(body), chat.stream(body), cancel_the_first()
    )
    finishes = sorted(events[-1]["finish_reason"] for _, events, _ in (first, second))
    assert finishes == ["cancelled", "stop"]
    assert len(upstream.requests) == 1
    _, later, _ = await chat.stream(body)
    assert start_of(later)["cached"] is True
    assert len(texts(later)) == 20


async def test_the_memory_store_is_bounded_by_entries_and_bytes():
    store = MemoryResponseStore(max_entries=3, max_bytes=2000)
    for key in "abc":
        await store.put(key, b"x" * 100, 60)
    assert await store.get("a") is not None  # now the most recently used
    await store.put("d", b"x" * 100, 60)
    assert await store.get("b") is None  # the least recently used went
    assert len(store) == 3
    await store.put("e", b"y" * 1950, 60)
    assert store.bytes <= 2000
    assert await store.get("e") is not None
    assert len(store) == 1
    await store.put("huge", b"z" * 2001, 60)
    assert await store.get("huge") is None
    await store.put("short", b"s", 1)
    await asyncio.sleep(1.05)
    assert await store.get("short") is None
    assert await store.clear() == 1
    assert store.bytes == 0


@pytest.mark.parametrize("raw", [b"", b"not zlib", b"x\x9c\x03\x00\x00\x00\x00\x01"])
def test_damaged_entries_are_misses(raw):
    assert CachedAnswer.decode(raw) is None


def test_entries_round_trip_compressed():
    entry = CachedAnswer(("uno", " dos"), "length", "c#1", 11, 2)
    encoded = entry.encode()
    assert CachedAnswer.decode(encoded) == entry
    long = CachedAnswer(("palabra ",) * 500, "stop", "c#0")
    assert len(long.encode()) < 500  # 4,000 characters of text, compressed
    assert CachedAnswer.decode(long.encode()) == long


async def test_a_websocket_chat_frame_gets_the_cached_answer(chat_harness, upstream):
    from tests.answers.test_websocket import done_of, frames_until, signed_in, token_of

    chat = await cache_app(chat_harness, upstream, live=True)
    body = {"model": "c", "messages": QUESTION, "temperature": 0}
    _, fresh, _ = await chat.stream(body)
    base = str(chat.client.base_url)
    async with await signed_in(base, token_of(chat.headers)) as socket:
        await socket.send(json.dumps({"type": "chat", "request_id": "r1", **body}))
        frames = await frames_until(socket, done_of("r1"))
        await socket.send(json.dumps({"type": "chat", "request_id": "r2", **body, "cache": False}))
        bypassed = await frames_until(socket, done_of("r2"))
    assert frames[0]["type"] == "start"
    assert frames[0]["cached"] is True
    assert [f["content"] for f in frames if f["type"] == "delta"] == texts(fresh)
    assert "cached" not in bypassed[0]
    assert len(upstream.requests) == 2
