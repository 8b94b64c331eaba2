"""The `azure` provider against a scripted Azure OpenAI endpoint on loopback."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tests.llm.conftest import (
    complete,
    complete_streamed,
    only,
    streamed_text,
    text_of,
)
from tests.mcp.test_chat_tools import tools_ready
from tests.support.native_upstream import NativeUpstream
from vektor.llm.deployments import load_deployments


def azure(server: NativeUpstream, script: str, **extra: object) -> dict[str, object]:
    """An entry for the double: the deployment name is the script."""
    return {
        "name": "az",
        "provider": "azure",
        "model": "gpt-4o",
        "base_url": server.origin,
        "deployment": script,
        "api_version": "2024-10-21",
        "api_key": "az-secret-key",
        "timeout_s": 5,
        **extra,
    }


ASK = {"model": "az", "messages": [{"role": "user", "content": "Hola"}]}


async def test_chat_stream_through_azure(chat_harness, native):
    server = native[0]
    chat = await chat_harness([azure(server, "chunks=3;text=uno dos tres")])
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert text_of(events) == "uno dos tres"
    usage = only(events, "usage")
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (11, 3)
    assert events[-1]["finish_reason"] == "stop"
    # The request: the deployment's URL, the version in the query, the key in a header only.
    assert server.paths == ["/openai/deployments/chunks=3;text=uno dos tres/chat/completions"]
    assert server.queries == [{"api-version": "2024-10-21"}]
    headers = server.headers[-1]
    assert headers["api-key"] == "az-secret-key"
    assert "authorization" not in headers
    sent = server.requests[-1]
    assert "model" not in sent
    assert sent["stream"] is True
    assert sent["messages"][-1] == {"role": "user", "content": "Hola"}


async def test_v1_streamed_and_not(chat_harness, native):
    entries = [
        azure(native[0], "chunks=4;text=a b", name="az"),
        azure(native[0], "chunks=2;text=c d", name="whole", streaming=False),
    ]
    chat = await chat_harness(entries)
    answer = await complete(chat, "az", max_tokens=50, temperature=0.2)
    assert answer["choices"][0]["message"]["content"] == "a b a b"
    assert answer["usage"]["completion_tokens"] == 4
    assert native[0].requests[-1]["max_tokens"] == 50
    assert native[0].requests[-1]["temperature"] == 0.2
    chunks = await complete_streamed(chat, "az")
    assert streamed_text(chunks) == "a b a b"
    assert chunks[-1]["usage"]["prompt_tokens"] == 11
    # A deployment with `streaming: false`: Azure asked once, without stream.
    chunks = await complete_streamed(chat, "whole")
    assert streamed_text(chunks) == "c d"
    assert native[0].requests[-1]["stream"] is False
    assert chunks[-1]["usage"]["completion_tokens"] == 2


async def test_client_tool_calls_are_parsed(chat_harness, native):
    script = 'chunks=1;text=ok;tool=get_weather;args={"city":"Lima"}'
    chat = await chat_harness([azure(native[0], script)])
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    answer = await complete(chat, "az", tools=tools)
    [call] = answer["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Lima"}
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert native[0].requests[-1]["tools"] == tools


async def test_mcp_tool_round(chat_harness, native, mcp_servers, url):
    port = mcp_servers.start("replica-az")
    chat = await chat_harness(
        [azure(native[0], "chunks=1;text=listo;tool=tools__whoami")],
        mcp=[{"name": "tools", "url": url(port)}],
    )
    await tools_ready(chat)
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert only(events, "tool_result")["content"] == "replica-az"
    assert text_of(events) == "listolisto"
    fed_back = native[0].requests[-1]["messages"]
    assert fed_back[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "replica-az"}


@pytest.mark.parametrize("failure", [500, 429])
async def test_a_failing_deployment_fails_over(chat_harness, native, failure):
    chat = await chat_harness(
        [
            azure(native[0], f"status={failure}", weight=1000),
            azure(native[1], "chunks=2;text=ok", weight=0),
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert text_of(events) == "ok ok"
    assert (len(native[0].requests), len(native[1].requests)) == (1, 1)


async def test_a_refusal_does_not_fail_over(chat_harness, native):
    chat = await chat_harness(
        [azure(native[0], "status=400", weight=1000), azure(native[1], "chunks=2", weight=0)]
    )
    status, _, raw = await chat.stream(ASK)
    assert status == 502
    assert "400" in raw
    assert (len(native[0].requests), len(native[1].requests)) == (1, 0)


async def test_an_entry_without_deployment_is_refused_when_loaded(tmp_path):
    entry = {"name": "az-broken", "provider": "azure", "model": "gpt-4o", "base_url": "http://x"}
    (tmp_path / "model_configs.json").write_text(json.dumps([entry]))
    with pytest.raises(ValidationError) as failure:
        load_deployments(tmp_path)
    assert "model entry 'az-broken' (provider 'azure') needs the field 'deployment'" in str(
        failure.value
    )
    entry = {**entry, "deployment": "d"}
    del entry["base_url"]
    (tmp_path / "model_configs.json").write_text(json.dumps([entry]))
    with pytest.raises(ValidationError, match="needs the field 'base_url'"):
        load_deployments(tmp_path)


async def test_a_reload_without_deployment_is_refused_and_changes_nothing(chat_harness, native):
    from tests.monitoring.test_system import make_admin

    chat = await chat_harness([azure(native[0], "chunks=1")])
    admin = await make_admin(chat.app, chat.client, "boss")
    config_dir = chat.app.state.vektor.settings.vektor_config_dir
    broken = {**azure(native[0], "chunks=1", name="az-new")}
    del broken["deployment"]
    (config_dir / "model_configs.json").write_text(json.dumps([broken]))
    refused = await chat.client.post("/config/reload", headers=admin)
    assert refused.status_code == 422
    assert (
        "model entry 'az-new' (provider 'azure') needs the field 'deployment'"
        in (refused.json()["detail"])
    )
    models = (await chat.client.get("/chat/models", headers=admin)).json()
    assert [m["name"] for m in models] == ["az"]
