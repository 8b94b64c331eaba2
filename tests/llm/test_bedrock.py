"""The `bedrock` provider against a scripted Converse API on loopback that speaks the binary
event stream and checks every request's SigV4 signature."""

from __future__ import annotations

import json

import pytest

from tests.llm.conftest import complete, complete_streamed, only, streamed_text, text_of
from tests.mcp.test_chat_tools import tools_ready
from tests.support.bedrock_upstream import ACCESS_KEY_ID, INPUT_TOKENS, REGION
from tests.support.native_upstream import NativeUpstream


def bedrock(server: NativeUpstream, script: str, **extra: object) -> dict[str, object]:
    """An entry for the double: the model id is the script."""
    return {
        "name": "rock",
        "provider": "bedrock",
        "model": script,
        "region": REGION,
        "base_url": server.origin,
        "aws_access_key_id_env": "TEST_AWS_KEY_ID",
        "aws_secret_access_key_env": "TEST_AWS_SECRET",
        "timeout_s": 5,
        **extra,
    }


ASK = {
    "model": "rock",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hola"},
    ],
}


async def test_chat_stream_through_bedrock(chat_harness, native):
    server = native[0]
    # A real model id has a ':' — it travels percent-encoded, and is signed that way.
    chat = await chat_harness([bedrock(server, "chunks=3;text=uno dos tres;v1:0")])
    status, events, _ = await chat.stream({**ASK, "temperature": 0.4, "max_tokens": 30})
    assert status == 200
    assert text_of(events) == "uno dos tres"
    usage = only(events, "usage")
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (INPUT_TOKENS, 3)
    assert events[-1]["finish_reason"] == "stop"
    assert server.paths == ["/model/chunks%3D3%3Btext%3Duno%20dos%20tres%3Bv1%3A0/converse-stream"]
    assert server.signature_failures == []
    headers = server.headers[-1]
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    sent = server.requests[-1]
    assert sent["system"] == [{"text": "Be brief."}]
    assert sent["messages"] == [{"role": "user", "content": [{"text": "Hola"}]}]
    assert sent["inferenceConfig"] == {"temperature": 0.4, "maxTokens": 30}


async def test_v1_streamed_and_not(chat_harness, native):
    entries = [
        bedrock(native[0], "chunks=4;text=a b", name="rock"),
        bedrock(native[0], "chunks=2;text=c d", name="whole", streaming=False),
    ]
    chat = await chat_harness(entries)
    answer = await complete(chat, "rock")
    assert answer["choices"][0]["message"]["content"] == "a b a b"
    assert answer["usage"]["prompt_tokens"] == INPUT_TOKENS
    assert answer["usage"]["completion_tokens"] == 4
    chunks = await complete_streamed(chat, "rock")
    assert streamed_text(chunks) == "a b a b"
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    chunks = await complete_streamed(chat, "whole")  # `streaming: false`: /converse
    assert streamed_text(chunks) == "c d"
    assert native[0].paths[-1].endswith("/converse")
    assert chunks[-1]["usage"]["prompt_tokens"] == INPUT_TOKENS
    assert native[0].signature_failures == []


async def test_a_wrong_secret_is_refused_by_the_signature_check(chat_harness, native, monkeypatch):
    chat = await chat_harness([bedrock(native[0], "chunks=2")])
    monkeypatch.setenv("TEST_AWS_SECRET", "not-the-secret")
    status, _, raw = await chat.stream(ASK)
    assert status == 502
    assert "403" in raw
    assert native[0].signature_failures == ["signature mismatch"]


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather", "parameters": SCHEMA},
    }
]
WEATHER = 'chunks=1;text=ok;tool=get_weather;args={"city":"Lima"}'


@pytest.mark.parametrize("streaming", [True, False])
async def test_client_tool_calls_are_parsed(chat_harness, native, streaming):
    chat = await chat_harness([bedrock(native[0], WEATHER, streaming=streaming)])
    choice = {"type": "function", "function": {"name": "get_weather"}}
    answer = await complete(chat, "rock", tools=TOOLS, tool_choice=choice)
    [call] = answer["choices"][0]["message"]["tool_calls"]
    assert call["id"] == "tooluse_1"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Lima"}
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    sent = native[0].requests[-1]
    spec = {"name": "get_weather", "description": "Weather", "inputSchema": {"json": SCHEMA}}
    assert sent["toolConfig"] == {
        "tools": [{"toolSpec": spec}],
        "toolChoice": {"tool": {"name": "get_weather"}},
    }


async def test_mcp_tool_round(chat_harness, native, mcp_servers, url):
    port = mcp_servers.start("replica-br")
    script = 'chunks=1;text=listo;tool=tools__add;args={"a":2,"b":40}'
    chat = await chat_harness(
        [bedrock(native[0], script)], mcp=[{"name": "tools", "url": url(port)}]
    )
    await tools_ready(chat)
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert only(events, "tool_result")["content"] == "42"
    assert text_of(events) == "listolisto"
    assistant_turn, result_turn = native[0].requests[-1]["messages"][-2:]
    assert assistant_turn == {
        "role": "assistant",
        "content": [
            {"text": "listo"},
            {
                "toolUse": {
                    "toolUseId": "tooluse_1",
                    "name": "tools__add",
                    "input": {"a": 2, "b": 40},
                }
            },
        ],
    }
    assert result_turn == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "42"}]}}],
    }
    assert only(events, "usage")["prompt_tokens"] == 2 * INPUT_TOKENS  # both rounds


@pytest.mark.parametrize("failure", [500, 503, 429])
async def test_a_failing_deployment_fails_over(chat_harness, native, failure):
    chat = await chat_harness(
        [
            bedrock(native[0], f"status={failure}", weight=1000),
            bedrock(native[1], "chunks=2;text=ok", weight=0),
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert text_of(events) == "ok ok"
    assert (len(native[0].requests), len(native[1].requests)) == (1, 1)


async def test_a_validation_error_does_not_fail_over(chat_harness, native):
    chat = await chat_harness(
        [bedrock(native[0], "status=400", weight=1000), bedrock(native[1], "chunks=2", weight=0)]
    )
    status, _, raw = await chat.stream(ASK)
    assert status == 502
    assert "400" in raw
    assert (len(native[0].requests), len(native[1].requests)) == (1, 0)


@pytest.mark.parametrize("script", ["chunks=4;drop=2", "chunks=4;bad=2"])
async def test_a_broken_answer_ends_with_an_error(chat_harness, native, script):
    chat = await chat_harness([bedrock(native[0], script)])
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert text_of(events) == "Hola desde"
    assert only(events, "error")
    assert events[-1]["finish_reason"] == "error"
