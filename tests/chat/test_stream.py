"""POST /chat/stream against scripted upstreams on loopback."""

import asyncio

import pytest

from tests.conftest import bearer, login, register, scripted


def texts(events):
    return "".join(e["content"] for e in events if e["type"] == "delta")


async def test_event_order_ids_and_persistence(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=5;text=uno dos tres")])
    status, events, _raw = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "Hola, ¿cómo estás?"}]}
    )
    assert status == 200
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start"
    assert kinds[-2:] == ["usage", "done"]
    assert set(kinds[1:-2]) == {"delta"}
    assert [e["_id"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["finish_reason"] == "stop"
    assert (
        events[-2]["total_tokens"] == events[-2]["prompt_tokens"] + events[-2]["completion_tokens"]
    )
    assert texts(events) == "uno dos tres uno dos"
    start = events[0]
    assert start["model"] == "scripted"

    history = await chat.client.get(
        f"/chat/history/{start['conversation_id']}", headers=chat.headers
    )
    body = history.json()
    assert body["title"] == "Hola, ¿cómo estás?"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert body["messages"][1]["id"] == start["message_id"]
    assert body["messages"][1]["content"] == "uno dos tres uno dos"
    assert body["messages"][1]["finish_reason"] == "stop"
    assert body["messages"][1]["completion_tokens"] == 5
    # The upstream saw the question and was asked for usage; the key went to it only.
    sent = upstream.requests[-1]
    assert sent["messages"][-1]["content"] == "Hola, ¿cómo estás?"
    assert sent["stream_options"] == {"include_usage": True}
    assert upstream.headers[-1]["authorization"] == "Bearer sk-test-secret"


async def test_continuing_a_conversation_sends_history(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=2;text=ok fine")])
    _, first, _ = await chat.stream(
        {
            "model": "scripted",
            "messages": [
                {"role": "system", "content": "Be brief"},
                {"role": "user", "content": "one"},
            ],
        }
    )
    conversation_id = first[0]["conversation_id"]
    _, second, _ = await chat.stream(
        {
            "model": "scripted",
            "conversation_id": conversation_id,
            "messages": [{"role": "user", "content": "two"}],
        }
    )
    assert second[0]["conversation_id"] == conversation_id
    sent = upstream.requests[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "Be brief"),
        ("user", "one"),
        ("assistant", "ok fine"),
        ("user", "two"),
    ]
    listing = (await chat.client.get("/chat/history", headers=chat.headers)).json()
    assert listing[0]["id"] == conversation_id
    assert listing[0]["message_count"] == 5


async def test_unknown_model_is_404_before_any_stream(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream)])
    response = await chat.client.post(
        "/chat/stream",
        headers=chat.headers,
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert (await chat.client.get("/chat/history", headers=chat.headers)).json() == []


@pytest.mark.parametrize(
    "body",
    [
        {"model": "scripted", "messages": []},
        {"model": "scripted", "messages": [{"role": "tool", "content": "x"}]},
        {"model": "scripted", "messages": [{"role": "user", "content": ""}]},
        {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "temperature": 5},
        {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
        {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "extra": 1},
        {"model": "scripted", "messages": [{"role": "assistant", "content": "last"}]},
        {"model": "scripted", "messages": [{"role": "user", "content": "x" * 40_000}]},
        {"model": "scripted", "messages": [{"role": "user", "content": "x"}] * 101},
        {
            "model": "scripted",
            "messages": [{"role": "user", "content": "hi"}],
            "conversation_id": "not-a-uuid",
        },
    ],
)
async def test_bad_bodies_are_422_and_store_nothing(chat_harness, upstream, body):
    chat = await chat_harness([scripted(upstream)])
    response = await chat.client.post("/chat/stream", headers=chat.headers, json=body)
    assert response.status_code == 422, response.text
    assert (await chat.client.get("/chat/history", headers=chat.headers)).json() == []
    assert upstream.requests == []


async def test_no_deployment_is_503_before_any_stream_and_nothing_kept(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "status=500"), scripted(upstream, "status=503")])
    response = await chat.client.post(
        "/chat/stream",
        headers=chat.headers,
        json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert len(upstream.requests) == 2
    assert (await chat.client.get("/chat/history", headers=chat.headers)).json() == []


async def test_upstream_client_error_is_502_not_failover(chat_harness, upstreams):
    for server in upstreams:
        server.reset()
    # The standby (weight 0) is only tried after the weighted one: the order is fixed.
    chat = await chat_harness(
        [
            scripted(upstreams[0], "status=400"),
            scripted(upstreams[1], "chunks=1", weight=0),
        ]
    )
    response = await chat.client.post(
        "/chat/stream",
        headers=chat.headers,
        json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 502
    assert "refused" in response.json()["detail"]
    assert len(upstreams[1].requests) == 0  # a refused request is not retried elsewhere
    assert (await chat.client.get("/chat/history", headers=chat.headers)).json() == []


async def test_failure_after_text_ends_with_error_then_done(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=6;drop=3;text=a b c d e f")])
    status, events, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 200
    kinds = [e["type"] for e in events]
    assert kinds[-3:] == ["error", "usage", "done"]
    assert events[-1]["finish_reason"] == "error"
    assert events[-3]["code"] == "upstream_error"
    assert texts(events) == "a b c"
    conversation = (
        await chat.client.get(f"/chat/history/{events[0]['conversation_id']}", headers=chat.headers)
    ).json()
    assert conversation["messages"][-1]["content"] == "a b c"
    assert conversation["messages"][-1]["finish_reason"] == "error"


async def test_stall_after_start_is_an_in_band_error(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "stall=3;chunks=1", timeout_s=0.5)])
    response = await chat.client.post(
        "/chat/stream",
        headers=chat.headers,
        json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
    )
    # A stall before the first token is a failure to start: 503.
    assert response.status_code == 503


async def test_heartbeat_comments_while_idle(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=3;delay=0.35")], sse_ping_seconds=0.1)
    status, events, raw = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 200
    assert ": ping" in raw
    assert events[-1]["type"] == "done"


async def test_too_many_concurrent_streams_is_429(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=10;delay=0.1")], max_concurrent_streams=2)
    body = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
    first = asyncio.create_task(chat.stream(body))
    second = asyncio.create_task(chat.stream(body))
    slots = chat.app.state.vektor.pipeline.slots
    for _ in range(200):  # until both answers hold their slots
        if sum(slots.taken.values()) == 2:
            break
        await asyncio.sleep(0.01)
    third = await chat.client.post("/chat/stream", headers=chat.headers, json=body)
    assert third.status_code == 429
    assert "retry-after" in third.headers
    assert (await first)[0] == 200
    assert (await second)[0] == 200
    # Slots come back when the answers end.
    assert (await chat.stream(body))[0] == 200


async def test_chat_rate_limit(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=1")], rate_limit_chat="2/day")
    body = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
    assert (await chat.stream(body))[0] == 200
    assert (await chat.stream(body))[0] == 200
    response = await chat.client.post("/chat/stream", headers=chat.headers, json=body)
    assert response.status_code == 429


async def test_chat_requires_auth(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream)])
    response = await chat.client.post(
        "/chat/stream", json={"model": "scripted", "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 401


async def test_another_users_conversation_is_404_for_append(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=1")])
    _, events, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "mine"}]}
    )
    await register(chat.client, "mallory")
    mallory = bearer(await login(chat.client, "mallory"))
    response = await chat.client.post(
        "/chat/stream",
        headers=mallory,
        json={
            "model": "scripted",
            "conversation_id": events[0]["conversation_id"],
            "messages": [{"role": "user", "content": "theirs"}],
        },
    )
    assert response.status_code == 404
    conversation = (
        await chat.client.get(f"/chat/history/{events[0]['conversation_id']}", headers=chat.headers)
    ).json()
    assert len(conversation["messages"]) == 2


async def test_models_one_row_per_public_model(chat_harness, upstream, upstreams):
    chat = await chat_harness(
        [
            scripted(upstreams[0], name="gpt", description="Primary"),
            scripted(upstreams[1], name="gpt"),
            scripted(upstreams[2], name="other", streaming=False),
        ]
    )
    response = await chat.client.get("/chat/models", headers=chat.headers)
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()}
    assert set(rows) == {"gpt", "other"}
    assert rows["gpt"] == {
        "name": "gpt",
        "description": "Primary",
        "provider": "openai",
        "streaming": True,
    }
    assert rows["other"]["streaming"] is False
    assert "sk-test-secret" not in response.text


async def test_non_streaming_deployment_still_streams_to_the_client(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=3;text=x y z", streaming=False)])
    status, events, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 200
    assert texts(events) == "x y z"
    assert upstream.requests[-1]["stream"] is False


async def test_anthropic_provider(chat_harness, upstream):
    chat = await chat_harness(
        [
            {
                "name": "claude",
                "provider": "anthropic",
                "model": "chunks=3;text=hi there friend",
                "base_url": f"http://127.0.0.1:{upstream.port}",
                "api_key": "ak-test",
                "timeout_s": 5,
            }
        ]
    )
    status, events, _ = await chat.stream(
        {
            "model": "claude",
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "hello"},
            ],
        }
    )
    assert status == 200
    assert texts(events) == "hi there friend"
    usage = next(e for e in events if e["type"] == "usage")
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (7, 3)
    sent = upstream.requests[-1]
    assert sent["system"] == "sys"
    assert sent["messages"] == [{"role": "user", "content": "hello"}]
    assert upstream.headers[-1]["x-api-key"] == "ak-test"


async def test_max_tokens_is_capped(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=1", max_tokens=64)], max_answer_tokens=100
    )
    await chat.stream(
        {"model": "scripted", "max_tokens": 5000, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert upstream.requests[-1]["max_tokens"] == 64
