"""One pool whose replicas speak different protocol revisions (an SDK 1.x server and a
current one) behind /mcp, and list changes told to the clients of the 2025 revisions."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.support.gateway import mcp_client, start_gateway
from vektor.mcp.config import McpServerConfig

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_pool_of_mixed_revisions(
    chat_harness, upstream, mcp_servers, url, mcp_v1_python, mode
):
    old = mcp_servers.start("old", python=mcp_v1_python)
    new = mcp_servers.start("new", "--minimal")
    mcp = [{"name": "tools", "url": url(old)}, {"name": "tools", "url": url(new)}]
    gateway = await start_gateway(chat_harness, upstream, mcp)
    pool = gateway.chat.app.state.vektor.mcp.pools["tools"]
    assert [replica.excluded for replica in pool.replicas] == [None, None]
    async with mcp_client(gateway.url, gateway.key, mode) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == {
            "tools__whoami",
            "tools__add",
        }
        served = Counter()
        for _ in range(24):
            served[(await client.call_tool("tools__whoami", {})).content[0].text] += 1
        assert set(served) == {"old", "new"}, served
        mcp_servers.kill(new)
        for _ in range(6):
            result = await client.call_tool("tools__add", {"a": 20, "b": 22})
            assert (result.is_error, result.content[0].text) == (False, "42")


async def test_list_changes_are_notified(chat_harness, upstream, mcp_servers, url):
    first, second = mcp_servers.start("one"), mcp_servers.start("two", "--minimal")
    gateway = await start_gateway(chat_harness, upstream, [{"name": "tools", "url": url(first)}])
    told = asyncio.Event()

    async def on_message(message):
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            told.set()

    async with mcp_client(gateway.url, gateway.key, "legacy", message_handler=on_message) as c:
        before = {tool.name for tool in (await c.list_tools()).tools}
        assert "tools__whoami" in before
        registry = gateway.chat.app.state.vektor.mcp
        await registry.reload(
            [
                McpServerConfig(name="tools", url=url(first)),
                McpServerConfig(name="more", url=url(second)),
            ]
        )
        await asyncio.wait_for(told.wait(), 20)
        after = {tool.name for tool in (await c.list_tools()).tools}
        assert after == before | {"more__whoami", "more__add"}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_progress_is_passed_on(chat_harness, upstream, mcp_servers, url, tmp_path, mode):
    port = mcp_servers.start("one")
    gateway = await start_gateway(chat_harness, upstream, [{"name": "tools", "url": url(port)}])
    heard = []

    async def progressed(progress, total, message):
        heard.append((progress, total, message))

    async with mcp_client(gateway.url, gateway.key, mode) as client:
        result = await client.call_tool(
            "tools__slow",
            {"path": str(tmp_path / "marks"), "steps": 3, "step_s": 0.1},
            progress_callback=progressed,
        )
    assert result.content[0].text == "done in 3 steps"
    assert heard == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
