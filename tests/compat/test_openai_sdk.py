"""The official `openai` SDK, unchanged, pointed at Vektor with an API key."""

import json

import openai
import pytest

from tests.conftest import scripted
from tests.mcp.test_chat_tools import tools_ready


async def sdk(chat, **options):
    """An AsyncOpenAI client for the harness's live server, with a fresh API key."""
    created = await chat.client.post(
        "/users/me/api-keys", json={"name": "sdk"}, headers=chat.headers
    )
    key = created.json()["key"]
    base = f"{chat.client.base_url}/v1"
    return openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0, **options)


QUESTION = [{"role": "user", "content": "Hola"}]


async def test_models_and_a_plain_completion(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=4;text=uno dos tres cuatro", name="gpt-vk")], live=True
    )
    client = await sdk(chat)
    models = await client.models.list()
    assert [m.id for m in models.data] == ["gpt-vk"]
    answer = await client.chat.completions.create(model="gpt-vk", messages=QUESTION)
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "uno dos tres cuatro"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.usage.completion_tokens > 0
    # Not stored unless asked.
    history = await chat.client.get("/chat/history", headers=chat.headers)
    assert history.json() == []
    await client.close()


async def test_streaming_with_usage(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=6;text=a b c", name="m")], live=True)
    client = await sdk(chat)
    stream = await client.chat.completions.create(
        model="m", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a b c a b c"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert set(finishes[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0
    # Without include_usage there is no usage chunk.
    plain = await client.chat.completions.create(model="m", messages=QUESTION, stream=True)
    assert all(c.choices for c in [c async for c in plain])
    await client.close()


async def test_client_tools_are_forwarded_and_their_calls_handed_back(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, 'chunks=1;text=ok;tool=get_weather;args={"city":"Lima"}', name="m")],
        live=True,
    )
    client = await sdk(chat)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    choice = {"type": "function", "function": {"name": "get_weather"}}
    answer = await client.chat.completions.create(
        model="m", messages=QUESTION, tools=tools, tool_choice=choice
    )
    sent = upstream.requests[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == choice
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Lima"}
    assert answer.choices[0].finish_reason == "tool_calls"

    # The client runs the tool and sends the result back; the model then answers.
    followup = [
        *QUESTION,
        answer.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 °C"},
    ]
    final = await client.chat.completions.create(model="m", messages=followup, tools=tools)
    assert final.choices[0].message.content == "ok"
    assert upstream.requests[-1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "18 °C",
    }

    stream = await client.chat.completions.create(
        model="m", messages=QUESTION, tools=tools, stream=True
    )
    chunks = [c async for c in stream]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(c.index, c.function.name) for c in calls] == [(0, "get_weather")]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    await client.close()


async def test_errors_in_openai_shape(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, name="m")], live=True, rate_limit_chat="3/day")
    client = await sdk(chat)
    wrong = openai.AsyncOpenAI(
        base_url=f"{chat.client.base_url}/v1", api_key="vk-not-a-key", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as bad_key:
        await wrong.chat.completions.create(model="m", messages=QUESTION)
    assert bad_key.value.body["type"] == "authentication_error"
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.chat.completions.create(model="nope", messages=QUESTION)
    assert unknown.value.body["code"] == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        await client.chat.completions.create(model="m", messages=[])
    assert invalid.value.body["param"] == "messages"
    await client.chat.completions.create(model="m", messages=QUESTION)
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model="m", messages=QUESTION)
    assert limited.value.response.headers["retry-after"]
    assert limited.value.body["type"] == "rate_limit_error"
    await client.close()
    await wrong.close()


async def test_all_deployments_down_is_a_503(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "status=503", name="m")], live=True)
    client = await sdk(chat)
    with pytest.raises(openai.InternalServerError) as down:
        await client.chat.completions.create(model="m", messages=QUESTION)
    assert down.value.status_code == 503
    await client.close()


async def test_upstream_dying_mid_stream_is_an_error_event(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=10;drop=3", name="m")], live=True)
    client = await sdk(chat)
    stream = await client.chat.completions.create(model="m", messages=QUESTION, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model="m", messages=QUESTION)
    assert failed.value.status_code == 502
    await client.close()


async def test_mcp_tools_on_request_and_storing_on_request(
    chat_harness, upstream, mcp_servers, url
):
    port = mcp_servers.start("replica")
    chat = await chat_harness(
        [scripted(upstream, 'chunks=1;text=listo;tool=tools__add;args={"a":2,"b":40}', name="m")],
        mcp=[{"name": "tools", "url": url(port)}],
        live=True,
    )
    await tools_ready(chat)
    client = await sdk(chat, default_headers={"X-Vektor-Tools": "mcp", "X-Vektor-Store": "true"})
    answer = await client.chat.completions.create(model="m", messages=QUESTION)
    # The scripted model says "listo" before its tool call and again after the result.
    assert answer.choices[0].message.content == "listolisto"
    assert answer.choices[0].finish_reason == "stop"
    first, second = upstream.requests[-2], upstream.requests[-1]
    assert "tools__add" in [t["function"]["name"] for t in first["tools"]]
    assert second["messages"][-1]["content"] == "42"  # Vektor ran the tool
    history = (await chat.client.get("/chat/history", headers=chat.headers)).json()
    assert [c["title"] for c in history] == ["Hola"]
    conversation = (
        await chat.client.get(f"/chat/history/{history[0]['id']}", headers=chat.headers)
    ).json()
    assert [m["role"] for m in conversation["messages"]] == ["user", "tool", "assistant"]
    assert json.loads(conversation["messages"][1]["content"])["result"] == "42"
    assert conversation["messages"][-1]["content"] == "listolisto"
    # Without the header, no MCP tools are offered.
    plain = await sdk(chat)
    await plain.chat.completions.create(model="m", messages=QUESTION)
    assert "tools" not in upstream.requests[-1]
    await client.close()
    await plain.close()


async def test_local_model_through_the_sdk(database_url, tmp_path):
    """The built-in model, with no configuration, answers the SDK too."""
    import asyncio

    import uvicorn
    from asgi_lifespan import LifespanManager

    from tests.conftest import empty_tables, login, make_settings, register
    from tests.support.upstream import free_port
    from vektor.app import create_app

    app = create_app(make_settings(database_url, tmp_path, vektor_config_dir=tmp_path / "none"))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    )
    async with LifespanManager(app):
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            import httpx

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                await register(http, "local")
                tokens = await login(http, "local")
            # An access token works as the SDK's key too.
            client = openai.AsyncOpenAI(
                base_url=f"http://127.0.0.1:{port}/v1",
                api_key=tokens["access_token"],
                max_retries=0,
                timeout=120,
            )
            question = [{"role": "user", "content": "Say hello."}]
            answer = await client.chat.completions.create(
                model="smollm2", messages=question, max_tokens=8
            )
            assert answer.choices[0].message.content
            stream = await client.chat.completions.create(
                model="smollm2", messages=question, max_tokens=8, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text
            await client.close()
        finally:
            server.should_exit = True
            await task
            await empty_tables(app)


async def test_a_client_leaving_closes_the_upstream_and_frees_its_slot(chat_harness, upstream):
    import asyncio

    chat = await chat_harness(
        [scripted(upstream, "chunks=100;delay=0.05", name="m")],
        live=True,
        max_concurrent_streams=1,
    )
    client = await sdk(chat)
    stream = await client.chat.completions.create(model="m", messages=QUESTION, stream=True)
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            break
    await stream.close()
    for _ in range(50):
        if upstream.disconnects:
            break
        await asyncio.sleep(0.05)
    assert upstream.disconnects == 1
    assert upstream.completed == 0
    # The user's one completion slot is free again.
    answer = await client.chat.completions.create(
        model="m", messages=QUESTION, stream=False, timeout=30
    )
    assert answer.choices[0].finish_reason == "stop"
    await client.close()


async def test_mcp_tool_rounds_past_the_limit_hand_the_calls_back(
    chat_harness, upstream, mcp_servers, url
):
    """The pipeline runs Vektor's tool rounds up to MAX_TOOL_ROUNDS for /v1 as for chat;
    past it, /v1 hands the model's calls back to the client (chat ends with `tool_limit`)."""
    port = mcp_servers.start("r")
    chat = await chat_harness(
        [scripted(upstream, "chunks=1;tool=tools__whoami;loop", name="m")],
        mcp=[{"name": "tools", "url": url(port)}],
        live=True,
        max_tool_rounds=2,
    )
    await tools_ready(chat)
    client = await sdk(chat, default_headers={"X-Vektor-Tools": "mcp"})
    before = len(upstream.requests)
    answer = await client.chat.completions.create(model="m", messages=QUESTION)
    assert len(upstream.requests) - before == 3  # the question and two tool rounds
    assert answer.choices[0].finish_reason == "tool_calls"
    [call] = answer.choices[0].message.tool_calls
    assert call.function.name == "tools__whoami"
    # Each round's assistant message holds only that round's text.
    last = upstream.requests[-1]["messages"]
    assert [m["role"] for m in last][-4:] == ["assistant", "tool", "assistant", "tool"]
    first_round, second_round = last[-4]["content"], last[-2]["content"]
    assert first_round
    assert first_round == second_round == answer.choices[0].message.content[: len(first_round)]
    await client.close()
