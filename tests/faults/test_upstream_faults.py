"""Upstreams that misbehave after the answer began: they drip bytes, send an endless event,
or die. The client gets an in-band error and `done`, what streamed is stored, and the
service goes on."""

import time

from tests.conftest import scripted

BODY = {"model": "scripted", "messages": [{"role": "user", "content": "hola"}]}


async def _stream_and_answer(chat):
    status, events, _ = await chat.stream(BODY)
    assert status == 200
    conversation = (
        await chat.client.get(f"/chat/history/{events[0]['conversation_id']}", headers=chat.headers)
    ).json()
    return events, conversation["messages"][-1]


async def test_an_upstream_dripping_bytes_is_cut_off(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=3;text=uno;drip=1", timeout_s=1.5)])
    started = time.monotonic()
    events, answer = await _stream_and_answer(chat)
    assert time.monotonic() - started < 6  # not 60 bytes × 1 s
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["usage", "done"]
    error = next(e for e in events if e["type"] == "error")
    assert "stalled" in error["message"]
    assert events[-1]["finish_reason"] == "error"
    assert answer["content"] == "uno"  # what streamed before is kept
    assert answer["finish_reason"] == "error"


async def test_an_endless_event_is_refused_without_reading_it_all(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=3;text=uno;huge=52428800")])
    events, answer = await _stream_and_answer(chat)
    error = next(e for e in events if e["type"] == "error")
    assert "larger than" in error["message"]
    assert events[-1]["finish_reason"] == "error"
    assert answer["content"] == "uno"
    # The service goes on.
    healthy = await chat_harness([scripted(upstream, "chunks=2;text=ok")])
    _status, events, _ = await healthy.stream(BODY)
    assert events[-1]["finish_reason"] == "stop"


async def test_a_deployment_dying_mid_stream_and_one_dying_before(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=10;drop=4;text=w")])
    events, answer = await _stream_and_answer(chat)
    assert events[-1]["finish_reason"] == "error"
    assert answer["content"].split() == ["w"] * 4
    # Before the first token another deployment takes over without the client noticing.
    fallback = await chat_harness(
        [
            scripted(upstream, "status=503", weight=1000),
            scripted(upstream, "chunks=2;text=ok", weight=1),
        ]
    )
    _status, events, _ = await fallback.stream(BODY)
    assert [e["type"] for e in events if e["type"] == "error"] == []
    assert events[-1]["finish_reason"] == "stop"


async def test_v1_client_gets_an_error_for_an_endless_event(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=3;text=uno;huge=52428800")])
    key = (
        await chat.client.post("/users/me/api-keys", json={"name": "k"}, headers=chat.headers)
    ).json()["key"]
    response = await chat.client.post(
        "/v1/chat/completions",
        json=BODY,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 502
    assert "larger than" in response.json()["error"]["message"]
