"""/chat/ws in `vektor serve` processes: under Uvicorn and under Gunicorn's Uvicorn workers,
and across two instances sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import httpx
import pytest

from tests.answers.test_websocket import (
    chat,
    closed_code,
    done_of,
    frames_until,
    signed_in,
)
from tests.conftest import parse_sse, scripted
from tests.scale.test_instances import account, instances  # noqa: F401
from tests.support.processes import serve_vektor, stop, vektor_env, wait_healthy
from tests.support.upstream import free_port

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("extra", [[], ["--prod", "--workers", "1"]], ids=["uvicorn", "gunicorn"])
async def test_served_socket_answers_and_caps_frames(tmp_path, upstream, extra):
    (tmp_path / "config").mkdir()
    models = [scripted(upstream, "chunks=5;text=served", name="m")]
    (tmp_path / "config" / "model_configs.json").write_text(json.dumps(models))
    port = free_port()
    env = vektor_env(tmp_path, SECRET_KEY=secrets.token_hex(32), RATE_LIMIT_CHAT="100/minute")
    process = serve_vektor(port, env, tmp_path, *extra)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/health/ready", process, deadline_s=60)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            tokens = await account(client, "served")
        async with await signed_in(base, tokens["access_token"]) as socket:
            await socket.send(chat("s", model="m"))
            frames = await frames_until(socket, done_of("s"))
            assert frames[-1]["finish_reason"] == "stop"
        # Over 1 MiB: closed with 1009 (by the server, told ws_max_size, or by the app).
        socket = await signed_in(base, tokens["access_token"], max_size=None)
        await socket.send(json.dumps({"type": "ping", "pad": "x" * (1024 * 1024)}))
        assert await closed_code(socket) == 1009
        # Stopping the server (SIGTERM) closes open sockets with 1012: reconnect elsewhere.
        socket = await signed_in(base, tokens["access_token"])
        closing = asyncio.create_task(closed_code(socket, timeout=20))
        await asyncio.to_thread(stop, process)
        assert await closing == 1012
    finally:
        stop(process)


async def test_resume_and_revocation_across_instances(instances):  # noqa: F811
    a_base, b_base = instances
    async with (
        httpx.AsyncClient(base_url=a_base, timeout=30) as a,
        httpx.AsyncClient(base_url=b_base, timeout=30) as b,
    ):
        tokens = await account(a, "twoways")
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        # An answer started over SSE on A is resumed over a socket on B.
        body = {"model": "slow", "messages": [{"role": "user", "content": "hola"}]}
        raw = ""
        async with a.stream("POST", "/chat/stream", json=body, headers=headers) as started:
            async for text in started.aiter_text():
                raw += text
                if raw.count('"type":"delta"') >= 3:
                    break
        seen = parse_sse(raw)
        message_id, last = seen[0]["message_id"], seen[-1]["_id"]
        async with await signed_in(b_base, tokens["access_token"]) as socket:
            resume = {"type": "resume", "message_id": message_id, "after": last}
            await socket.send(json.dumps(resume))
            rest = await frames_until(socket, lambda f: f["type"] == "done", timeout=30)
        assert rest[0]["seq"] == last + 1
        assert [f["seq"] for f in rest] == list(range(last + 1, last + 1 + len(rest)))
        deltas = [f for f in rest if f["type"] == "delta"] + [
            e for e in seen if e["type"] == "delta"
        ]
        assert len(deltas) == 60
        stored = await b.get(f"/chat/history/{seen[0]['conversation_id']}", headers=headers)
        assert stored.json()["messages"][-1]["content"] == " ".join(["w"] * 60)

        # A logout on A closes B's socket within a second.
        socket = await signed_in(b_base, tokens["access_token"])
        started_at = time.monotonic()
        logout = await a.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        assert logout.status_code == 200
        assert await closed_code(socket, timeout=3) == 4401
        assert time.monotonic() - started_at < 1.0
