"""The `ollama` provider against a scripted Ollama server (native /api/chat) on loopback."""

from __future__ import annotations

import json

import pytest

from tests.llm.conftest import complete, complete_streamed, only, streamed_text, text_of
from tests.mcp.test_chat_tools import tools_ready
from tests.support.native_upstream import NativeUpstream
from vektor.llm.providers.ollama import LineDecoder


def ollama(server: NativeUpstream, script: str, **extra: object) -> dict[str, object]:
    """An entry for the double: the model name is the script."""
    return {
        "name": "llama",
        "provider": "ollama",
        "model": script,
        "base_url": server.origin,
        "timeout_s": 5,
        **extra,
    }


ASK = {"model": "llama", "messages": [{"role": "user", "content": "Hola"}]}


async def test_chat_stream_through_ollama(chat_harness, native):
    server = native[0]
    chat = await chat_harness([ollama(server, "chunks=3;text=uno dos tres")])
    status, events, _ = await chat.stream({**ASK, "temperature": 0.3, "max_tokens": 40})
    assert status == 200
    assert text_of(events) == "uno dos tres"
    usage = only(events, "usage")
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (13, 3)
    assert events[-1]["finish_reason"] == "stop"
    assert server.paths == ["/api/chat"]
    sent = server.requests[-1]
    assert sent["stream"] is True
    assert sent["options"] == {"temperature": 0.3, "num_predict": 40}
    assert sent["messages"][-1] == {"role": "user", "content": "Hola"}


async def test_v1_streamed_and_not(chat_harness, native):
    entries = [
        ollama(native[0], "chunks=4;text=a b", name="llama"),
        ollama(native[0], "chunks=2;text=c d", name="whole", streaming=False),
    ]
    chat = await chat_harness(entries)
    answer = await complete(chat, "llama")
    assert answer["choices"][0]["message"]["content"] == "a b a b"
    assert answer["usage"]["prompt_tokens"] == 13
    assert answer["usage"]["completion_tokens"] == 4
    chunks = await complete_streamed(chat, "llama")
    assert streamed_text(chunks) == "a b a b"
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    chunks = await complete_streamed(chat, "whole")  # `streaming: false`: stream false
    assert streamed_text(chunks) == "c d"
    assert native[0].requests[-1]["stream"] is False
    assert chunks[-1]["usage"]["prompt_tokens"] == 13


@pytest.mark.parametrize("streaming", [True, False])
async def test_client_tool_calls_are_parsed(chat_harness, native, streaming):
    script = 'chunks=1;text=ok;tool=get_weather;args={"city":"Lima"}'
    chat = await chat_harness([ollama(native[0], script, streaming=streaming)])
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    answer = await complete(chat, "llama", tools=tools)
    [call] = answer["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Lima"}
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert native[0].requests[-1]["tools"] == tools


async def test_mcp_tool_round(chat_harness, native, mcp_servers, url):
    port = mcp_servers.start("replica-ol")
    script = 'chunks=1;text=listo;tool=tools__add;args={"a":2,"b":40}'
    chat = await chat_harness(
        [ollama(native[0], script)], mcp=[{"name": "tools", "url": url(port)}]
    )
    await tools_ready(chat)
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert only(events, "tool_result")["content"] == "42"
    assert text_of(events) == "listolisto"
    fed_back = native[0].requests[-1]["messages"]
    # The call goes back with its arguments as an object, the result naming its tool.
    assert fed_back[-2]["tool_calls"] == [
        {"function": {"name": "tools__add", "arguments": {"a": 2, "b": 40}}}
    ]
    assert fed_back[-1] == {"role": "tool", "content": "42", "tool_name": "tools__add"}
    assert only(events, "usage")["prompt_tokens"] == 26  # both rounds


@pytest.mark.parametrize("failure", [500, 429])
async def test_a_failing_deployment_fails_over(chat_harness, native, failure):
    chat = await chat_harness(
        [
            ollama(native[0], f"status={failure}", weight=1000),
            ollama(native[1], "chunks=2;text=ok", weight=0),
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert text_of(events) == "ok ok"
    assert (len(native[0].requests), len(native[1].requests)) == (1, 1)


async def test_a_refusal_does_not_fail_over(chat_harness, native):
    chat = await chat_harness(
        [ollama(native[0], "status=400", weight=1000), ollama(native[1], "chunks=2", weight=0)]
    )
    status, _, raw = await chat.stream(ASK)
    assert status == 502
    assert "400" in raw
    assert (len(native[0].requests), len(native[1].requests)) == (1, 0)


@pytest.mark.parametrize("script", ["chunks=4;drop=2", "chunks=4;bad=2"])
async def test_a_broken_answer_ends_with_an_error(chat_harness, native, script):
    chat = await chat_harness([ollama(native[0], script)])
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert text_of(events) == "Hola desde"
    assert only(events, "error")
    assert events[-1]["finish_reason"] == "error"


def test_lines_cut_anywhere_and_bounded():
    body = b'{"a": 1}\n\n{"b": 2}\n{"c": 3}'
    for size in range(1, len(body) + 1):
        decoder = LineDecoder()
        lines = [
            line for i in range(0, len(body), size) for line in decoder.feed(body[i : i + size])
        ]
        assert [*lines, *decoder.end()] == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']
    with pytest.raises(Exception, match="over 8 bytes"):
        LineDecoder(limit=8).feed(b"0123456789")
