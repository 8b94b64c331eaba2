"""Two real server processes on one PostgreSQL database and one Redis (started by the test
on a spare port, so stopping it touches nothing else): limits, revocation, streams and the
change feed work across instances, and Redis going away is not an outage."""

import asyncio
import json
import shutil
import time

import httpx
import pytest

from tests.conftest import parse_sse, scripted
from tests.support.databases import temporary_database
from tests.support.instances import serve_instances

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
PASSWORD = "long enough password"


@pytest.fixture
async def instances(tmp_path, redis_server, upstream):
    """Two `vektor serve` processes sharing the database and Redis; their base URLs."""
    (tmp_path / "config").mkdir()
    models = [scripted(upstream, "chunks=60;delay=0.05;text=w", name="slow")]
    (tmp_path / "config" / "model_configs.json").write_text(json.dumps(models))
    limits = {"RATE_LIMIT_AUTH": "5/minute", "RATE_LIMIT_CHAT": "1000/minute"}
    async with (
        temporary_database("postgresql", tmp_path) as url,
        serve_instances(tmp_path, url, redis_server.port, limits) as bases,
    ):
        yield bases


async def account(client, name):
    await client.post(
        "/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    login = await client.post("/auth/login", data={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return login.json()


async def test_limits_revocation_streams_and_feed_across_instances(instances, redis_server):
    a_base, b_base = instances
    async with (
        httpx.AsyncClient(base_url=a_base, timeout=30) as a,
        httpx.AsyncClient(base_url=b_base, timeout=30) as b,
    ):
        # One login budget of 5 per address across both: 3 + 3 attempts admit exactly 5.
        codes = []
        for client in (a, b, a, b, a, b):
            response = await client.post("/auth/login", data={"username": "x", "password": "y"})
            codes.append(response.status_code)
        assert codes.count(429) == 1, codes
        assert codes[-1] == 429

    redis_server.flush()  # a fresh login budget for the rest
    async with (
        httpx.AsyncClient(base_url=a_base, timeout=30) as a,
        httpx.AsyncClient(base_url=b_base, timeout=30) as b,
    ):
        tokens = await account(a, "multi")
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}

        # A change made through A reaches a device listening on B within a second.
        async with b.stream("GET", "/sync/events", headers=headers) as feed:
            await asyncio.sleep(0.3)
            changed_at = time.monotonic()
            put = await a.put("/users/preferences", headers=headers, json={"theme": "light"})
            assert put.status_code == 200
            raw = ""
            async with asyncio.timeout(5):
                async for text in feed.aiter_text():
                    raw += text
                    if "preferences.updated" in raw:
                        break
            assert time.monotonic() - changed_at < 1.0

        # A stream started on A is resumed on B with Last-Event-ID, then cancelled from B.
        body = {"model": "slow", "messages": [{"role": "user", "content": "hola"}]}
        raw = ""
        async with a.stream("POST", "/chat/stream", json=body, headers=headers) as started:
            async for text in started.aiter_text():
                raw += text
                if raw.count('"type":"delta"') >= 3:
                    break
        seen = parse_sse(raw)
        message_id, last = seen[0]["message_id"], seen[-1]["_id"]
        resumed = []
        async with b.stream(
            "GET",
            f"/chat/stream/{message_id}",
            headers={**headers, "Last-Event-ID": str(last)},
        ) as follow:
            raw = ""
            async for text in follow.aiter_text():
                raw += text
                if raw.count('"type":"delta"') >= 2 and not resumed:
                    resumed = parse_sse(raw)
                    cancel = await b.post(f"/chat/stream/{message_id}/cancel", headers=headers)
                    assert cancel.status_code == 202
            events = parse_sse(raw)
        assert events[0]["_id"] == last + 1  # nothing replayed twice, nothing skipped
        assert events[-1]["type"] == "done"
        assert events[-1]["finish_reason"] == "cancelled"
        again = await b.post(f"/chat/stream/{message_id}/cancel", headers=headers)
        assert again.status_code == 409

        # Revocation: a logout through B rejects the access token on A at once.
        assert (await a.get("/users/me", headers=headers)).status_code == 200
        logout = await b.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        assert logout.status_code in (200, 204)
        assert (await a.get("/users/me", headers=headers)).status_code == 401

        # Redis stops: both instances keep answering (limits fail open), no 500.
        redis_server.stop()
        other = await account(b, "afterredis")
        other_headers = {"Authorization": f"Bearer {other['access_token']}"}
        for client in (a, b):
            assert (await client.get("/users/me", headers=other_headers)).status_code == 200
            health = (await client.get("/health")).json()
            assert health["status"] == "ok"
            assert health["checks"]["redis"]["status"] == "down"
        put = await a.put("/users/preferences", headers=other_headers, json={"theme": "dark"})
        assert put.status_code == 200
        status, events, _ = await _collect(b, body, other_headers)
        assert status == 200
        assert events[-1]["type"] == "done"


async def _collect(client, body, headers):
    raw = ""
    async with client.stream("POST", "/chat/stream", json=body, headers=headers) as response:
        async for text in response.aiter_text():
            raw += text
    return response.status_code, parse_sse(raw), raw


async def test_concurrent_answers_per_user_hold_across_instances(instances):
    """MAX_CONCURRENT_STREAMS (4) counts a user's answers on every instance together."""
    a_base, b_base = instances
    async with (
        httpx.AsyncClient(base_url=a_base, timeout=30) as a,
        httpx.AsyncClient(base_url=b_base, timeout=30) as b,
    ):
        tokens = await account(a, "slots")
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        body = {"model": "slow", "messages": [{"role": "user", "content": "hola"}]}
        started = asyncio.Event()
        running = 0

        async def answer(client):
            nonlocal running
            async with client.stream("POST", "/chat/stream", json=body, headers=headers) as r:
                assert r.status_code == 200
                raw = ""
                async for text in r.aiter_text():
                    raw += text
                    if '"type":"delta"' in raw and not started.is_set():
                        running += 1
                        if running == 4:
                            started.set()
                return parse_sse(raw)[-1]

        answers = [asyncio.create_task(answer(c)) for c in (a, a, b, b)]
        async with asyncio.timeout(20):
            await started.wait()
        for client in (a, b):
            refused = await client.post("/chat/stream", json=body, headers=headers)
            assert refused.status_code == 429
            assert "retry-after" in refused.headers
        finished = await asyncio.gather(*answers)
        assert [event["type"] for event in finished] == ["done"] * 4
        # Every slot came back: the next answer is admitted.
        async with b.stream("POST", "/chat/stream", json=body, headers=headers) as again:
            assert again.status_code == 200
