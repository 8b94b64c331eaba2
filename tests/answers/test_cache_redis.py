"""The response cache on Redis: shared by instances, compressed, with each model's TTL,
emptied for every instance at once; a Redis that goes away makes misses, never errors."""

from __future__ import annotations

import shutil
import zlib

import orjson
import pytest
from redis.asyncio import Redis

from tests.answers.test_cache import CACHED, QUESTION, start_of, texts
from tests.conftest import REDIS_URL, scripted
from tests.monitoring.test_system import make_admin
from tests.support.instances import RedisServer
from tests.usage.helpers import usage_rows


def models(upstream):
    """A cached model with a 60 s TTL."""
    return [scripted(upstream, "chunks=5;text=una respuesta larga", name="c", **CACHED)]


async def cache_keys(namespace: str) -> list[bytes]:
    """The namespace's cache entries on the machine's Redis."""
    redis = Redis.from_url(REDIS_URL)
    try:
        return [key async for key in redis.scan_iter(match=f"{namespace}:rcache:*")]
    finally:
        await redis.aclose()


async def test_two_instances_share_the_cache(chat_harness, upstream, namespace):
    shared = {"response_cache": True, "redis_url": REDIS_URL, "redis_namespace": namespace}
    a = await chat_harness(models(upstream), **shared)
    b = await chat_harness(models(upstream), **shared)
    body = {"model": "c", "messages": QUESTION, "temperature": 0}
    status, fresh, _ = await a.stream(body)
    assert status == 200
    assert "cached" not in start_of(fresh)
    # the same user asking the other instance: a hit, replayed in the same pieces
    status, replayed, _ = await b.stream(body, a.headers)
    assert status == 200
    assert start_of(replayed)["cached"] is True
    assert texts(replayed) == texts(fresh)
    assert len(texts(fresh)) == 5
    assert len(upstream.requests) == 1
    rows = await usage_rows(a.app)
    assert [r.cached for r in rows] == [False, True]
    # one entry, compressed, expiring after the model's cache_ttl_s
    [key] = await cache_keys(namespace)
    redis = Redis.from_url(REDIS_URL)
    try:
        value, ttl = await redis.get(key), await redis.ttl(key)
    finally:
        await redis.aclose()
    assert 0 < ttl <= 60
    assert orjson.loads(zlib.decompress(value))["p"] == texts(fresh)
    # another user, user scope: a miss on either instance
    status, other, _ = await b.stream(body)
    assert "cached" not in start_of(other)
    assert len(upstream.requests) == 2


async def test_emptying_on_one_instance_empties_it_for_all(chat_harness, upstream, namespace):
    shared = {"response_cache": True, "redis_url": REDIS_URL, "redis_namespace": namespace}
    a = await chat_harness(models(upstream), **shared)
    b = await chat_harness(models(upstream), **shared)
    body = {"model": "c", "messages": QUESTION, "temperature": 0}
    for _ in range(2):
        response = await a.client.post("/v1/chat/completions", json=body, headers=a.headers)
        assert response.status_code == 200
    assert response.headers["X-Vektor-Cache"] == "hit"
    admin = await make_admin(b.app, b.client)
    emptied = await b.client.delete("/admin/cache", headers=admin)
    assert emptied.json() == {"removed": 1}
    assert await cache_keys(namespace) == []
    again = await a.client.post("/v1/chat/completions", json=body, headers=a.headers)
    assert again.headers["X-Vektor-Cache"] == "miss"
    assert len(upstream.requests) == 2


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_without_redis_the_cache_misses_and_nothing_fails(chat_harness, upstream):
    redis = RedisServer()
    redis.start()
    try:
        chat = await chat_harness(
            models(upstream),
            response_cache=True,
            redis_url=f"redis://127.0.0.1:{redis.port}/0",
        )
        admin = await make_admin(chat.app, chat.client)
        body = {"model": "c", "messages": QUESTION, "temperature": 0}
        first = await chat.client.post("/v1/chat/completions", json=body, headers=chat.headers)
        assert first.headers["X-Vektor-Cache"] == "miss"
        redis.stop()
        for _ in range(2):
            response = await chat.client.post(
                "/v1/chat/completions", json=body, headers=chat.headers
            )
            assert response.status_code == 200
            assert response.headers["X-Vektor-Cache"] == "miss"
            assert response.json()["choices"] == first.json()["choices"]
        assert len(upstream.requests) == 3
        refused = await chat.client.delete("/admin/cache", headers=admin)
        assert refused.status_code == 503
        assert refused.json() == {"detail": "The response cache (Redis) cannot be reached"}
    finally:
        redis.stop()
