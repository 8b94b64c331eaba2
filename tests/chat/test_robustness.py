"""Upstreams that break the protocol, and cancels that arrive twice."""

import asyncio

from tests.chat.test_jobs import BODY, Reader, wait_for_answer
from tests.conftest import scripted


async def test_malformed_chunk_ends_the_answer_and_frees_the_slot(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=5;bad=2;text=a b c d e")], max_concurrent_streams=1
    )
    for _ in range(3):  # one slot: a leaked one would make the next request a 429
        status, events, _ = await chat.stream(BODY)
        assert status == 200
        assert [e["type"] for e in events][-3:] == ["error", "usage", "done"]
        assert events[-1]["finish_reason"] == "error"
    assert chat.app.state.vektor.jobs.running == {}
    assert sum(chat.app.state.vektor.pipeline.slots.taken.values()) == 0


async def test_malformed_first_chunk_fails_over(chat_harness, upstreams):
    for server in upstreams:
        server.reset()
    chat = await chat_harness(
        [
            scripted(upstreams[0], "chunks=3;bad=0", weight=1000),
            scripted(upstreams[1], "chunks=2;text=fine"),
        ]
    )
    status, events, _ = await chat.stream(BODY)
    assert status == 200
    assert "".join(e["content"] for e in events if e["type"] == "delta") == "fine fine"


async def test_cancel_twice_still_stores_and_closes(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=100;delay=0.05;text=w")], live=True)
    async with chat.client.stream("POST", "/chat/stream", json=BODY, headers=chat.headers) as r:
        reader = Reader(r)
        first = await reader.read(3)
        url = f"/chat/stream/{first[0]['message_id']}/cancel"
        responses = await asyncio.gather(
            chat.client.post(url, headers=chat.headers), chat.client.post(url, headers=chat.headers)
        )
        assert {r.status_code for r in responses} <= {202, 409}
        rest = await asyncio.wait_for(reader.read(10_000), timeout=10)
    assert rest[-1]["type"] == "done"
    assert rest[-1]["finish_reason"] == "cancelled"
    answer = await wait_for_answer(chat, first[0]["conversation_id"])
    assert answer["finish_reason"] == "cancelled"
