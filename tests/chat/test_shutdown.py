"""SIGTERM with answers in flight: short ones finish, long ones are stopped after the grace
period, stored, and their streams end with `done` (`cancelled`). A real server process."""

import asyncio
import json
import os
import signal
import time

import httpx
import pytest

from tests.conftest import parse_sse, scripted
from tests.support.processes import serve_vektor, stop, vektor_env, wait_healthy
from tests.support.upstream import free_port


def start_server(tmp_path, port, workers=1):
    env = vektor_env(
        tmp_path,
        SHUTDOWN_GRACE_SECONDS="1.5",
        RATE_LIMIT_CHAT="1000/minute",
        SECRET_KEY="Zx8qqqqqqqqqqKp2-w7VbN4mT_a9LcR5s-shutdown",
    )
    process = serve_vektor(port, env, tmp_path, "--workers", str(workers))
    wait_healthy(f"http://127.0.0.1:{port}/health/ready", process, deadline_s=60)
    return process


async def read_stream(client, headers, model, started):
    body = {"model": model, "messages": [{"role": "user", "content": model}]}
    raw = ""
    async with client.stream("POST", "/chat/stream", json=body, headers=headers) as response:
        async for text in response.aiter_text():
            raw += text
            if '"type":"delta"' in raw:
                started.set()
    return parse_sse(raw)


@pytest.mark.parametrize("workers", [1, 2], ids=["uvicorn", "gunicorn"])
async def test_sigterm_lets_short_answers_finish_and_stops_long_ones(tmp_path, upstream, workers):
    (tmp_path / "config").mkdir()
    models = [
        scripted(upstream, "chunks=200;delay=0.05;text=w", name="long"),
        scripted(upstream, "chunks=10;delay=0.05;text=w", name="short"),
    ]
    (tmp_path / "config" / "model_configs.json").write_text(json.dumps(models))
    port = free_port()
    server = start_server(tmp_path, port, workers)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            account = {
                "email": "shutdown@example.com",
                "username": "shutdown",
                "password": "long password",
            }
            await client.post("/auth/register", json=account)
            login = await client.post(
                "/auth/login", data={"username": "shutdown", "password": "long password"}
            )
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            long_started, short_started = asyncio.Event(), asyncio.Event()
            long_task = asyncio.create_task(read_stream(client, headers, "long", long_started))
            await long_started.wait()
            short_task = asyncio.create_task(read_stream(client, headers, "short", short_started))
            await short_started.wait()
            stopped_at = time.monotonic()
            os.kill(server.pid, signal.SIGTERM)
            short_events, long_events = await asyncio.gather(short_task, long_task)
            waited = time.monotonic() - stopped_at
        assert short_events[-1]["type"] == "done"
        assert short_events[-1]["finish_reason"] == "stop"  # finished within the grace period
        assert long_events[-1]["type"] == "done"
        assert long_events[-1]["finish_reason"] == "cancelled"
        assert 1.0 < waited < 8
        # It exits by itself (uvicorn re-raises the SIGTERM once it has shut down cleanly).
        assert server.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        stop(server)
    streamed = "".join(e["content"] for e in long_events if e["type"] == "delta")

    server = start_server(tmp_path, port)  # the same database, after the restart
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            login = await client.post(
                "/auth/login", data={"username": "shutdown", "password": "long password"}
            )
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            conversation_id = long_events[0]["conversation_id"]
            stored = (await client.get(f"/chat/history/{conversation_id}", headers=headers)).json()
        answer = stored["messages"][-1]
        assert answer["finish_reason"] == "cancelled"
        assert answer["content"] == streamed  # nothing streamed was lost
    finally:
        stop(server)
