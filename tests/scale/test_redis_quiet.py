"""Quiet gaps longer than redis-py's 5 s socket timeout, with the default 15 s SSE ping, on
two real instances sharing PostgreSQL and a Redis of the test's own: a blocking XREAD
outlasts the gap instead of ending the stream or reconnecting the change feed."""

import asyncio
import contextlib
import json
import shutil

import httpx
import pytest

from tests.conftest import parse_sse, scripted
from tests.scale.test_instances import account
from tests.support.databases import temporary_database
from tests.support.instances import RedisServer, serve_instances

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
GAP_S = 7  # longer than redis-py's default socket timeout (5 s)


@pytest.fixture
async def quiet_instances(tmp_path, upstream):
    """Two instances with the default SSE ping, one model that pauses GAP_S between pieces."""
    redis = RedisServer()
    redis.start()
    (tmp_path / "config").mkdir()
    models = [scripted(upstream, f"chunks=2;delay={GAP_S};text=w", name="pausing", timeout_s=30)]
    (tmp_path / "config" / "model_configs.json").write_text(json.dumps(models))
    try:
        async with (
            temporary_database("postgresql", tmp_path) as url,
            serve_instances(tmp_path, url, redis.port, {"SSE_PING_SECONDS": None}) as bases,
        ):
            yield bases, tmp_path / "b" / "logs"
    finally:
        redis.stop()


async def test_resumed_stream_and_feed_outlast_a_quiet_gap(quiet_instances):
    (a_base, b_base), b_logs = quiet_instances
    async with (
        httpx.AsyncClient(base_url=a_base, timeout=60) as a,
        httpx.AsyncClient(base_url=b_base, timeout=60) as b,
    ):
        tokens = await account(a, "quiet")
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        feed_raw = ""

        async def follow_feed():
            nonlocal feed_raw
            with contextlib.suppress(httpx.TransportError):  # the instance may stop first
                async with b.stream("GET", "/sync/events", headers=headers) as feed:
                    async for text in feed.aiter_text():
                        feed_raw += text

        feed_task = asyncio.create_task(follow_feed())
        body = {"model": "pausing", "messages": [{"role": "user", "content": "hola"}]}
        raw = ""
        async with a.stream("POST", "/chat/stream", json=body, headers=headers) as started:
            async for text in started.aiter_text():
                raw += text
                if parse_sse(raw):
                    break
        first = parse_sse(raw)
        assert first, (started.status_code, raw)
        message_id, last = first[0]["message_id"], first[-1]["_id"]
        raw = ""
        async with asyncio.timeout(4 * GAP_S):
            async with b.stream(
                "GET",
                f"/chat/stream/{message_id}",
                headers={**headers, "Last-Event-ID": str(last)},
            ) as resumed:
                assert resumed.status_code == 200
                async for text in resumed.aiter_text():
                    raw += text
        events = parse_sse(raw)
        # The first read may hold the first delta as well as the start.
        assert [e["type"] for e in first + events].count("delta") == 2, (first, raw)
        assert events[-1]["type"] == "done"
        assert events[-1]["finish_reason"] == "stop"
        feed_task.cancel()
        await asyncio.gather(feed_task, return_exceptions=True)

    # The change feed on B stayed on its blocking read: no heartbeat before the 15 s ping
    # (the answer took 2 × GAP_S) and no reconnection logged.
    assert ": ping" not in feed_raw, feed_raw
    logged = "".join(p.read_text() for p in b_logs.glob("*.log"))
    assert "Redis unreachable" not in logged, logged
