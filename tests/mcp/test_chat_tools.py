"""Tools inside /chat/stream: the scripted model asks, a real MCP server answers."""

import asyncio
import json

from tests.conftest import scripted


async def tools_ready(chat, pool="tools"):
    for _ in range(200):
        registry = chat.app.state.vektor.mcp
        if pool in registry.pools and registry.pools[pool].tools:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the MCP tools were never listed")


async def test_tool_call_round_trip(chat_harness, upstream, mcp_servers, url):
    port = mcp_servers.start("replica-1")
    chat = await chat_harness(
        [scripted(upstream, "chunks=2;text=Listo;tool=tools__whoami")],
        mcp=[{"name": "tools", "url": url(port)}],
    )
    await tools_ready(chat)
    status, events, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "who?"}]}
    )
    assert status == 200
    kinds = [e["type"] for e in events]
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("done")
    call = next(e for e in events if e["type"] == "tool_call")
    result = next(e for e in events if e["type"] == "tool_result")
    assert call["name"] == "tools__whoami"
    assert call["server"] == "tools"
    assert result["id"] == call["id"]
    assert result["content"] == "replica-1"
    assert result["is_error"] is False
    assert events[-1]["finish_reason"] == "stop"
    # The model was offered the tool and then given its result.
    first, second = upstream.requests[-2], upstream.requests[-1]
    assert any(t["function"]["name"] == "tools__whoami" for t in first["tools"])
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "replica-1",
    }
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "tools__whoami"
    # Stored with the conversation.
    stored = (
        await chat.client.get(f"/chat/history/{events[0]['conversation_id']}", headers=chat.headers)
    ).json()["messages"]
    assert [m["role"] for m in stored] == ["user", "tool", "assistant"]
    assert json.loads(stored[1]["content"])["result"] == "replica-1"


async def test_tool_rounds_are_limited(chat_harness, upstream, mcp_servers, url):
    port = mcp_servers.start("r")
    chat = await chat_harness(
        [scripted(upstream, "chunks=1;tool=tools__whoami;loop")],
        mcp=[{"name": "tools", "url": url(port)}],
        max_tool_rounds=2,
    )
    await tools_ready(chat)
    _, events, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "again and again"}]}
    )
    assert [e["type"] for e in events].count("tool_result") == 2
    assert events[-1]["finish_reason"] == "tool_limit"


async def test_tools_false_offers_no_tools(chat_harness, upstream, mcp_servers, url):
    port = mcp_servers.start("r")
    chat = await chat_harness(
        [scripted(upstream, "chunks=1")], mcp=[{"name": "tools", "url": url(port)}]
    )
    await tools_ready(chat)
    await chat.stream(
        {"model": "scripted", "tools": False, "messages": [{"role": "user", "content": "no tools"}]}
    )
    assert "tools" not in upstream.requests[-1]


async def test_all_replicas_down_is_a_clean_tool_error(chat_harness, upstream, mcp_servers, url):
    port = mcp_servers.start("r")
    chat = await chat_harness(
        [scripted(upstream, "chunks=1;text=ok;tool=tools__whoami")],
        mcp=[{"name": "tools", "url": url(port), "timeout_s": 2}],
    )
    await tools_ready(chat)
    mcp_servers.kill(port)
    _, events, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "who?"}]}
    )
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["is_error"] is True
    assert events[-1]["type"] == "done"


async def test_cancelling_the_chat_cancels_the_tool_call_on_the_server(
    chat_harness, upstream, mcp_servers, url, tmp_path
):
    from tests.chat.test_jobs import Reader, wait_for_answer

    port = mcp_servers.start("slow")
    marks = tmp_path / "marks.txt"
    arguments = json.dumps({"path": str(marks), "steps": 50, "step_s": 0.2})
    chat = await chat_harness(
        [scripted(upstream, f"chunks=1;text=ok;tool=tools__slow;args={arguments}")],
        mcp=[{"name": "tools", "url": url(port)}],
        live=True,
    )
    await tools_ready(chat)
    body = {"model": "scripted", "messages": [{"role": "user", "content": "go slow"}]}
    async with chat.client.stream("POST", "/chat/stream", json=body, headers=chat.headers) as r:
        reader = Reader(r)
        events = []
        while not any(e["type"] == "tool_progress" for e in events):
            events += await reader.read(1)
        assert marks.read_text().splitlines() == ["started"]
        message_id = events[0]["message_id"]
        cancelled = await chat.client.post(
            f"/chat/stream/{message_id}/cancel", headers=chat.headers
        )
        assert cancelled.status_code == 202
        events += await reader.read(10_000)
    progress = next(e for e in events if e["type"] == "tool_progress")
    assert progress["name"] == "tools__slow"
    assert progress["total"] == 50
    assert events[-1]["type"] == "done"
    assert events[-1]["finish_reason"] == "cancelled"
    for _ in range(50):  # the server's handler was cancelled, not left to finish
        if "cancelled" in marks.read_text():
            break
        await asyncio.sleep(0.1)
    assert marks.read_text().splitlines() == ["started", "cancelled"]
    answer = await wait_for_answer(chat, events[0]["conversation_id"])
    assert answer["finish_reason"] == "cancelled"
