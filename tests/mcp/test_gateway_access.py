"""The pools a user may use, in chat as through /mcp; gateway calls in /api/status,
/metrics and /api/endpoints."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import scripted
from tests.monitoring.test_system import make_admin, samples
from tests.support.gateway import mcp_client, pools_ready, start_gateway
from vektor.auth.service import set_mcp_pools

pytestmark = pytest.mark.timeout(120)


async def _restrict(app, user_id, pools):
    """What an admin's PATCH /admin/users/{id} {"mcp_pools": …} does."""
    async with app.state.vektor.sessionmaker() as session:
        await set_mcp_pools(session, user_id=user_id, pools=pools)
        await session.commit()
    await app.state.vektor.revocations.bump(user_id)  # once committed: cached pools are stale


async def test_chat_neither_offers_nor_runs_a_pool_the_user_may_not_use(
    chat_harness, upstream, mcp_servers, url, tmp_path
):
    open_port, closed_port = mcp_servers.start("open"), mcp_servers.start("closed")
    runs = tmp_path / "runs.txt"
    arguments = json.dumps({"path": str(runs)})
    chat = await chat_harness(
        [scripted(upstream, f"chunks=1;text=ok;tool=secret__increment;args={arguments}")],
        mcp=[{"name": "tools", "url": url(open_port)}, {"name": "secret", "url": url(closed_port)}],
    )
    await pools_ready(chat, "tools", "secret")
    me = (await chat.client.get("/users/me", headers=chat.headers)).json()
    await _restrict(chat.app, uuid.UUID(me["id"]), ["tools"])
    status, events, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "use the secret"}]}
    )
    assert status == 200
    offered = {tool["function"]["name"] for tool in upstream.requests[0]["tools"]}
    assert "tools__add" in offered
    assert not any(name.startswith("secret__") for name in offered)
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["is_error"] is True
    assert result["content"] == "Unknown tool secret__increment"
    assert not runs.exists()
    assert chat.app.state.vektor.mcp.pools["secret"].replicas[0].calls == 0
    # Every pool again (null): the same call now runs.
    await _restrict(chat.app, uuid.UUID(me["id"]), None)
    upstream.reset()
    _, events, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "use the secret"}]}
    )
    assert next(e for e in events if e["type"] == "tool_result")["is_error"] is False
    assert runs.read_text().split() == ["closed"]


async def test_gateway_calls_in_status_metrics_and_endpoints(
    chat_harness, upstream, mcp_servers, url
):
    port = mcp_servers.start("one")
    gateway = await start_gateway(chat_harness, upstream, [{"name": "tools", "url": url(port)}])
    user_id = await gateway.user_id()
    async with mcp_client(gateway.url, gateway.key) as client:
        await client.call_tool("tools__add", {"a": 1, "b": 2})
        await client.call_tool("tools__add", {"a": 1, "b": 3})
        await client.call_tool("tools__fail", {})
    client = gateway.chat.client
    admin = await make_admin(gateway.chat.app, client, "admin")
    status = (await client.get("/api/status", headers=admin)).json()["mcp_gateway"]
    assert status["enabled"] is True
    assert status["pools"]["tools"] == {"calls": 3, "errors": 1}
    assert {"user_id": user_id, "calls": 3} in status["users"]
    text = (await client.get("/metrics")).text
    calls = samples(text, "vektor_mcp_gateway_calls_total")
    assert calls[(("pool", "tools"), ("result", "ok"))] >= 2
    assert calls[(("pool", "tools"), ("result", "tool_error"))] >= 1
    assert samples(text, "vektor_mcp_gateway_user_calls_total")[(("user", user_id),)] == 3
    listed = (await client.get("/api/endpoints")).json()
    mcp_row = next(row for row in listed if row["path"] == "/mcp")
    assert mcp_row["who"] == "user or API key"
    info = (await client.get("/api/info")).json()
    assert info["capabilities"]["mcp_gateway"] == "/mcp"


async def test_gateway_off_is_not_served(chat_harness, upstream, mcp_servers, url):
    port = mcp_servers.start("one")
    chat = await chat_harness(
        [scripted(upstream, "chunks=1")],
        mcp=[{"name": "tools", "url": url(port)}],
        mcp_gateway=False,
    )
    answer = await chat.client.post("/mcp", json={}, headers=chat.headers)
    assert answer.status_code == 404
