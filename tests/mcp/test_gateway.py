"""/mcp through the official Python clients: listing, calling, failover, access."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.gateway import mcp_client, start_gateway
from vektor.auth.service import set_mcp_pools

pytestmark = pytest.mark.timeout(120)


async def restrict(gateway, pools):
    """What an admin's PATCH /admin/users/{id} {"mcp_pools": …} does."""
    user_id = uuid.UUID(await gateway.user_id())
    state = gateway.chat.app.state.vektor
    async with state.sessionmaker() as session:
        await set_mcp_pools(session, user_id=user_id, pools=pools)
        await session.commit()
    await state.revocations.bump(user_id)  # once committed: the cached pools are stale


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_current_client_lists_and_calls(chat_harness, upstream, mcp_servers, url, mode):
    port = mcp_servers.start("one")
    gateway = await start_gateway(chat_harness, upstream, [{"name": "tools", "url": url(port)}])
    async with mcp_client(gateway.url, gateway.key, mode) as client:
        listed = await client.list_tools()
        tools = {tool.name: tool for tool in listed.tools}
        assert {"tools__add", "tools__whoami", "tools__increment"} <= set(tools)
        add = tools["tools__add"]
        assert add.annotations is not None
        assert add.annotations.read_only_hint is True
        assert add.input_schema["required"] == ["a", "b"]
        result = await client.call_tool("tools__add", {"a": 2, "b": 3})
        assert result.is_error is False
        assert result.content[0].text == "5"
        assert result.structured_content == {"result": 5}
        who = await client.call_tool("tools__whoami", {})
        assert who.content[0].text == "one"


async def test_access_token_works_too(chat_harness, upstream, mcp_servers, url):
    port = mcp_servers.start("one")
    gateway = await start_gateway(chat_harness, upstream, [{"name": "tools", "url": url(port)}])
    token = gateway.chat.headers["Authorization"].removeprefix("Bearer ")
    async with mcp_client(gateway.url, token) as client:
        assert (await client.call_tool("tools__add", {"a": 1, "b": 1})).content[0].text == "2"


async def test_401_without_a_valid_token(chat_harness, upstream, mcp_servers, url):
    port = mcp_servers.start("one")
    gateway = await start_gateway(chat_harness, upstream, [{"name": "tools", "url": url(port)}])
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient(timeout=10) as http:
        missing = await http.post(gateway.url, json=body)
        wrong = await http.post(
            gateway.url, json=body, headers={"Authorization": "Bearer vk-not-a-key"}
        )
    for answer in (missing, wrong):
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_pool_the_user_may_not_use_is_invisible_and_uncallable(
    chat_harness, upstream, mcp_servers, url, tmp_path
):
    open_port, closed_port = mcp_servers.start("open"), mcp_servers.start("closed")
    gateway = await start_gateway(
        chat_harness,
        upstream,
        [{"name": "tools", "url": url(open_port)}, {"name": "secret", "url": url(closed_port)}],
        "tools",
        "secret",
    )
    await restrict(gateway, ["tools"])
    marks = tmp_path / "ran.txt"
    async with mcp_client(gateway.url, gateway.key) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "tools__add" in names
        assert not any(name.startswith("secret__") for name in names)
        with pytest.raises(MCPError) as refused:
            await client.call_tool("secret__increment", {"path": str(marks)})
        assert refused.value.error.code == -32602
        assert "Unknown tool" in refused.value.error.message
    assert not marks.exists()
    await restrict(gateway, None)  # null: every pool again
    async with mcp_client(gateway.url, gateway.key) as client:
        assert (await client.call_tool("secret__whoami", {})).content[0].text == "closed"


async def test_replica_killed_during_a_run(chat_harness, upstream, mcp_servers, url):
    first, second = mcp_servers.start("a"), mcp_servers.start("b")
    mcp = [{"name": "tools", "url": url(first)}, {"name": "tools", "url": url(second)}]
    gateway = await start_gateway(chat_harness, upstream, mcp)
    answers = []
    async with mcp_client(gateway.url, gateway.key) as client:
        for index in range(30):
            if index == 10:
                mcp_servers.kill(first)
            result = await client.call_tool("tools__lookup", {"key": f"k{index}"})
            answers.append((result.is_error, result.content[0].text))
    assert all(not is_error for is_error, _ in answers), answers
    assert all(text.endswith("@b") for _, text in answers[10:])


async def test_non_idempotent_tool_never_runs_twice(
    chat_harness, upstream, mcp_servers, url, tmp_path
):
    first, second = mcp_servers.start("a"), mcp_servers.start("b")
    mcp = [{"name": "tools", "url": url(first)}, {"name": "tools", "url": url(second)}]
    gateway = await start_gateway(chat_harness, upstream, mcp)
    runs = tmp_path / "runs.txt"
    async with mcp_client(gateway.url, gateway.key) as client:
        call = asyncio.create_task(
            client.call_tool("tools__increment", {"path": str(runs), "delay": 5})
        )
        for _ in range(200):  # the call has reached a replica: kill that one
            if runs.exists() and runs.read_text().strip():
                break
            await asyncio.sleep(0.05)
        ran_on = runs.read_text().split()
        assert len(ran_on) == 1
        mcp_servers.kill(first if ran_on[0] == "a" else second)
        result = await asyncio.wait_for(call, 30)
    assert result.is_error is True
    assert "whether it ran is unknown" in result.content[0].text
    assert runs.read_text().split() == ran_on  # never run again on the other replica


async def test_pool_that_is_down_gives_the_chat_tool_error(
    chat_harness, upstream, mcp_servers, url
):
    port = mcp_servers.start("only")
    gateway = await start_gateway(chat_harness, upstream, [{"name": "tools", "url": url(port)}])
    mcp_servers.kill(port)
    async with mcp_client(gateway.url, gateway.key) as client:
        result = await client.call_tool("tools__add", {"a": 1, "b": 2})
    assert result.is_error is True
    assert result.content[0].text == "No replica of 'tools' could run the tool."


async def test_sdk_1x_client_lists_and_calls(
    chat_harness, upstream, mcp_servers, url, mcp_v1_python
):
    port = mcp_servers.start("one")
    gateway = await start_gateway(chat_harness, upstream, [{"name": "tools", "url": url(port)}])
    script = str(Path(__file__).parent.parent / "support" / "mcp_client_v1.py")
    process = await asyncio.create_subprocess_exec(
        str(mcp_v1_python),
        script,
        gateway.url,
        gateway.key,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()[-2000:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["protocol_version"] == "2025-11-25"  # 1.30, the last 1.x, says so
    assert seen["server"] == "vektor"
    assert "tools__add" in seen["tools"]
    assert seen["add_read_only"] is True
    assert seen["result"] == ["5"]
    assert seen["is_error"] is False
