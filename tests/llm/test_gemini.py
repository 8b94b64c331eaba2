"""The `gemini` provider against a scripted Gemini API on loopback."""

from __future__ import annotations

import json

import pytest

from tests.llm.conftest import complete, complete_streamed, only, streamed_text, text_of
from tests.mcp.test_chat_tools import tools_ready
from tests.support.native_upstream import NativeUpstream


def gemini(server: NativeUpstream, script: str, **extra: object) -> dict[str, object]:
    """An entry for the double: the model name is the script."""
    return {
        "name": "gem",
        "provider": "gemini",
        "model": script,
        "base_url": server.origin,
        "api_key": "gm-secret-key",
        "timeout_s": 5,
        **extra,
    }


ASK = {
    "model": "gem",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hola"},
    ],
}


async def test_chat_stream_through_gemini(chat_harness, native):
    server = native[0]
    chat = await chat_harness([gemini(server, "chunks=3;text=uno dos tres")])
    status, events, _ = await chat.stream({**ASK, "temperature": 0.4, "max_tokens": 30})
    assert status == 200
    assert text_of(events) == "uno dos tres"
    usage = only(events, "usage")
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (17, 3)
    assert events[-1]["finish_reason"] == "stop"
    assert server.paths == ["/v1beta/models/chunks=3;text=uno dos tres:streamGenerateContent"]
    assert server.queries == [{"alt": "sse"}]
    headers = server.headers[-1]
    assert headers["x-goog-api-key"] == "gm-secret-key"
    assert "authorization" not in headers
    sent = server.requests[-1]
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "Hola"}]}]
    assert sent["generationConfig"] == {"temperature": 0.4, "maxOutputTokens": 30}


async def test_v1_streamed_and_not(chat_harness, native):
    entries = [
        gemini(native[0], "chunks=4;text=a b", name="gem"),
        gemini(native[0], "chunks=2;text=c d", name="whole", streaming=False),
    ]
    chat = await chat_harness(entries)
    answer = await complete(chat, "gem")
    assert answer["choices"][0]["message"]["content"] == "a b a b"
    assert answer["usage"]["prompt_tokens"] == 17
    assert answer["usage"]["completion_tokens"] == 4
    chunks = await complete_streamed(chat, "gem")
    assert streamed_text(chunks) == "a b a b"
    assert chunks[-1]["usage"]["completion_tokens"] == 4  # the last usageMetadata counts
    chunks = await complete_streamed(chat, "whole")  # `streaming: false`: generateContent
    assert streamed_text(chunks) == "c d"
    assert native[0].paths[-1].endswith(":generateContent")
    assert chunks[-1]["usage"]["prompt_tokens"] == 17


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
    chat = await chat_harness([gemini(native[0], WEATHER, streaming=streaming)])
    choice = {"type": "function", "function": {"name": "get_weather"}}
    answer = await complete(chat, "gem", tools=TOOLS, tool_choice=choice)
    [call] = answer["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Lima"}
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    sent = native[0].requests[-1]
    declaration = {"name": "get_weather", "description": "Weather", "parametersJsonSchema": SCHEMA}
    assert sent["tools"] == [{"functionDeclarations": [declaration]}]
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


async def test_a_call_handed_back_by_the_client_is_replayed(chat_harness, native):
    chat = await chat_harness([gemini(native[0], WEATHER)])
    answer = await complete(chat, "gem", tools=TOOLS)
    [call] = answer["choices"][0]["message"]["tool_calls"]
    followup = [
        {"role": "user", "content": "Hola"},
        answer["choices"][0]["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "18 °C"},
    ]
    final = await complete(chat, "gem", tools=TOOLS, messages=followup)
    assert final["choices"][0]["message"]["content"] == "ok"
    model_turn, result_turn = native[0].requests[-1]["contents"][1:]
    assert model_turn["role"] == "model"
    [replayed] = [p for p in model_turn["parts"] if "functionCall" in p]
    assert replayed["functionCall"] == {"name": "get_weather", "args": {"city": "Lima"}}
    # The signature did not travel through the client: Google's placeholder stands in.
    assert replayed["thoughtSignature"] == "skip_thought_signature_validator"
    assert result_turn == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "18 °C"}}}],
    }


async def test_mcp_tool_round_keeps_the_signature(chat_harness, native, mcp_servers, url):
    port = mcp_servers.start("replica-gm")
    script = 'chunks=1;text=listo;tool=tools__add;args={"a":2,"b":40}'
    chat = await chat_harness(
        [gemini(native[0], script)], mcp=[{"name": "tools", "url": url(port)}]
    )
    await tools_ready(chat)
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert only(events, "tool_result")["content"] == "42"
    assert text_of(events) == "listolisto"
    first, second = native[0].requests[-2], native[0].requests[-1]
    declared = first["tools"][0]["functionDeclarations"]
    assert "tools__add" in [d["name"] for d in declared]
    model_turn, result_turn = second["contents"][-2:]
    assert model_turn["parts"][-1] == {
        "functionCall": {"name": "tools__add", "args": {"a": 2, "b": 40}},
        "thoughtSignature": "c2lnbmF0dXJl",  # as the model gave it
    }
    assert result_turn["parts"] == [
        {"functionResponse": {"name": "tools__add", "response": {"output": "42"}}}
    ]
    assert only(events, "usage")["prompt_tokens"] == 34  # both rounds


@pytest.mark.parametrize("failure", [500, 429])
async def test_a_failing_deployment_fails_over(chat_harness, native, failure):
    chat = await chat_harness(
        [
            gemini(native[0], f"status={failure}", weight=1000),
            gemini(native[1], "chunks=2;text=ok", weight=0),
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert text_of(events) == "ok ok"
    assert (len(native[0].requests), len(native[1].requests)) == (1, 1)


async def test_a_refusal_does_not_fail_over(chat_harness, native):
    chat = await chat_harness(
        [gemini(native[0], "status=400", weight=1000), gemini(native[1], "chunks=2", weight=0)]
    )
    status, _, raw = await chat.stream(ASK)
    assert status == 502
    assert "400" in raw
    assert (len(native[0].requests), len(native[1].requests)) == (1, 0)


@pytest.mark.parametrize("script", ["chunks=4;drop=2", "chunks=4;bad=2"])
async def test_a_broken_answer_ends_with_an_error(chat_harness, native, script):
    chat = await chat_harness([gemini(native[0], script)])
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert text_of(events) == "Hola desde"
    assert only(events, "error")
    assert events[-1]["finish_reason"] == "error"
