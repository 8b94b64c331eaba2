"""Generations outlive their connection; cancel; resume with Last-Event-ID. Real sockets."""

import asyncio
import json
import time
import tracemalloc
import uuid
from typing import Any

import pytest
from fastapi.sse import format_sse_event

from tests.conftest import bearer, collect_stream, login, parse_sse, register, scripted
from vektor.answers.event_log import MemoryEventLog, encode_event

BODY = {"messages": [{"role": "user", "content": "tell me"}], "model": "scripted"}


class Reader:
    """Reads SSE events from an open response, a few at a time."""

    def __init__(self, response):
        self.chunks = response.aiter_text()
        self.buffer = ""

    async def read(self, count):
        """Events until `count` have arrived or the stream ends."""
        events = []
        while len(events) < count:
            while "\n\n" in self.buffer and len(events) < count:
                block, self.buffer = self.buffer.split("\n\n", 1)
                events.extend(parse_sse(block + "\n\n"))
            if len(events) >= count:
                break
            try:
                self.buffer += await anext(self.chunks)
            except StopAsyncIteration:
                break
        return events


async def read_until(response, count):
    """The first `count` events of a response."""
    return await Reader(response).read(count)


async def wait_for_answer(chat, conversation_id, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conversation = (
            await chat.client.get(f"/chat/history/{conversation_id}", headers=chat.headers)
        ).json()
        if conversation["messages"][-1]["role"] == "assistant":
            return conversation["messages"][-1]
        await asyncio.sleep(0.05)
    raise AssertionError("the answer was never stored")


async def test_dropped_connection_still_completes_and_stores(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=12;delay=0.05;text=w")], live=True)
    async with chat.client.stream("POST", "/chat/stream", json=BODY, headers=chat.headers) as r:
        assert r.status_code == 200
        events = await read_until(r, 3)
    # The client is gone; the answer goes on to the end and is stored.
    answer = await wait_for_answer(chat, events[0]["conversation_id"])
    assert answer["content"] == " ".join(["w"] * 12)
    assert answer["finish_reason"] == "stop"
    assert upstream.completed == 1
    assert upstream.disconnects == 0


async def test_cancel_on_disconnect_setting(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=40;delay=0.05;text=w")], live=True, cancel_on_disconnect=True
    )
    async with chat.client.stream("POST", "/chat/stream", json=BODY, headers=chat.headers) as r:
        events = await read_until(r, 3)
    answer = await wait_for_answer(chat, events[0]["conversation_id"])
    assert answer["finish_reason"] == "cancelled"
    assert len(answer["content"].split()) < 40
    await asyncio.sleep(0.2)
    assert upstream.disconnects == 1
    assert upstream.completed == 0


async def test_cancel_closes_upstream_and_stores_partial(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=100;delay=0.05;text=w")], live=True)
    async with chat.client.stream("POST", "/chat/stream", json=BODY, headers=chat.headers) as r:
        reader = Reader(r)
        first = await reader.read(3)
        message_id = first[0]["message_id"]
        cancelled = await chat.client.post(
            f"/chat/stream/{message_id}/cancel", headers=chat.headers
        )
        assert cancelled.status_code == 202
        rest = await reader.read(10_000)
    events = first + rest
    assert events[-1] == {"type": "done", "finish_reason": "cancelled", "_id": events[-1]["_id"]}
    assert events[-2]["type"] == "usage"
    await asyncio.sleep(0.2)
    assert upstream.disconnects == 1
    assert upstream.completed == 0
    answer = await wait_for_answer(chat, first[0]["conversation_id"])
    assert answer["finish_reason"] == "cancelled"
    streamed = "".join(e["content"] for e in events if e["type"] == "delta")
    assert answer["content"] == streamed
    again = await chat.client.post(f"/chat/stream/{message_id}/cancel", headers=chat.headers)
    assert again.status_code == 409


async def test_an_answer_cancelled_before_its_task_first_runs_still_ends(chat_harness, upstream):
    """A cancel that arrives in the same step as the start (before the job's task has run
    at all) still stores the answer as cancelled and ends its stream."""
    chat = await chat_harness([scripted(upstream, "chunks=100;delay=0.05;text=w")], live=True)
    jobs = chat.app.state.vektor.jobs
    start = jobs.start

    async def start_then_cancel(answer, opened):
        await start(answer, opened)  # the embedded event log does not yield here
        assert jobs.cancel(answer.id)

    jobs.start = start_then_cancel
    async with asyncio.timeout(20):
        status, events, _ = await chat.stream(BODY)
    assert status == 200
    assert events[-1]["type"] == "done"
    assert events[-1]["finish_reason"] == "cancelled"
    assert not jobs.running
    answer = await wait_for_answer(chat, events[0]["conversation_id"])
    assert answer["finish_reason"] == "cancelled"


async def test_resume_with_last_event_id_then_live(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=15;delay=0.05;text=a b c")], live=True)
    async with chat.client.stream("POST", "/chat/stream", json=BODY, headers=chat.headers) as r:
        seen = await read_until(r, 4)
    message_id = seen[0]["message_id"]
    last = seen[-1]["_id"]
    status, rest, _ = await collect_stream(
        chat.client,
        "GET",
        f"/chat/stream/{message_id}",
        headers={**chat.headers, "Last-Event-ID": str(last)},
    )
    assert status == 200
    assert rest[0]["_id"] == last + 1
    assert rest[-1]["type"] == "done"
    ids = [e["_id"] for e in seen + rest]
    assert ids == list(range(1, len(ids) + 1))
    text = "".join(e["content"] for e in seen + rest if e["type"] == "delta")
    answer = await wait_for_answer(chat, seen[0]["conversation_id"])
    assert text == answer["content"]


async def test_resume_after_the_end_replays_and_closes(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=3")])
    _, events, _ = await chat.stream(BODY)
    message_id = events[0]["message_id"]
    _, replay, _ = await collect_stream(
        chat.client, "GET", f"/chat/stream/{message_id}", headers=chat.headers
    )
    assert replay == events
    _, tail, _ = await collect_stream(
        chat.client,
        "GET",
        f"/chat/stream/{message_id}",
        headers={**chat.headers, "Last-Event-ID": str(events[-2]["_id"])},
    )
    assert tail == events[-1:]


async def test_streams_are_private(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=3")])
    _, events, _ = await chat.stream(BODY)
    message_id = events[0]["message_id"]
    await register(chat.client, "eve")
    eve = bearer(await login(chat.client, "eve"))
    assert (await chat.client.get(f"/chat/stream/{message_id}", headers=eve)).status_code == 404
    cancel = await chat.client.post(f"/chat/stream/{message_id}/cancel", headers=eve)
    assert cancel.status_code == 404
    unknown = "00000000-0000-0000-0000-000000000000"
    assert (
        await chat.client.get(f"/chat/stream/{unknown}", headers=chat.headers)
    ).status_code == 404


async def test_bad_last_event_id_is_400(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=1")])
    _, events, _ = await chat.stream(BODY)
    response = await chat.client.get(
        f"/chat/stream/{events[0]['message_id']}",
        headers={**chat.headers, "Last-Event-ID": "abc"},
    )
    assert response.status_code == 400


async def test_conversation_deleted_mid_answer(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=10;delay=0.05")], live=True)
    async with chat.client.stream("POST", "/chat/stream", json=BODY, headers=chat.headers) as r:
        reader = Reader(r)
        first = await reader.read(2)
        deleted = await chat.client.delete(
            f"/chat/history/{first[0]['conversation_id']}", headers=chat.headers
        )
        assert deleted.status_code == 204
        rest = await reader.read(10_000)
    assert rest[-1]["type"] == "done"
    assert any(e["type"] == "error" for e in rest)


async def test_the_first_piece_goes_out_with_start(chat_harness, upstream):
    # The first piece has arrived before the response starts: it leaves in the same write
    # as `start`, so the client's first read holds both (the next piece is 300 ms later).
    chat = await chat_harness([scripted(upstream, "chunks=3;delay=0.3;text=w")], live=True)
    async with chat.client.stream("POST", "/chat/stream", json=BODY, headers=chat.headers) as r:
        first = await anext(r.aiter_text())
    assert [event["type"] for event in parse_sse(first)] == ["start", "delta"]


async def test_json_on_the_wire(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=2;text=ñandú 🙂")])
    _, _, raw = await chat.stream(BODY)
    blocks = [b for b in raw.split("\n\n") if b.strip()]
    for block in blocks:
        lines = sorted(block.splitlines())
        assert lines[0].startswith("data: ")
        assert lines[1].startswith("id: ")
        json.loads(lines[0][6:])
    assert "ñandú" in raw


@pytest.mark.parametrize(
    "data",
    [
        {"type": "delta", "content": 'héllo\nnew\r\nline\u2028 "quoted" \\ 😀'},
        {"type": "done", "finish_reason": "stop"},
        {"type": "usage", "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    ],
)
def test_event_frames_are_one_data_line_and_an_id(data: dict[str, Any]) -> None:
    frame = encode_event(42, data).frame
    compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    assert frame == format_sse_event(data_str=compact, id="42")
    lines = frame.decode("utf-8").split("\n")
    assert lines[2:] == ["", ""]
    assert json.loads(lines[0].removeprefix("data: ")) == data
    assert lines[1] == "id: 42"


async def _next_within(subscription: Any, seconds: float) -> Any:
    return await asyncio.wait_for(anext(subscription), seconds)


async def test_heartbeat_only_after_ping_s_of_quiet() -> None:
    """Events closer together than ping_s bring no heartbeat; a quiet spell brings one per
    ping_s; a consumer that is slow to take events is not woken while busy."""
    store = MemoryEventLog()
    message, owner = uuid.uuid4(), uuid.uuid4()
    store.create(message, owner)
    ping_s = 0.2
    subscription = store.subscribe(message, 0, ping_s)
    store.publish(message, {"type": "start"})
    assert [e.id for e in await _next_within(subscription, 1)] == [1]
    for index in range(6):  # 0.06 s apart: never quiet for ping_s
        await asyncio.sleep(0.06)
        store.publish(message, {"type": "delta", "content": str(index)})
        batch = await _next_within(subscription, 1)
        assert batch is not None
        assert batch[-1].data["content"] == str(index)
    quiet_from = time.monotonic()
    assert await _next_within(subscription, 1) is None  # a heartbeat …
    first = time.monotonic() - quiet_from
    assert await _next_within(subscription, 1) is None  # … and another
    second = time.monotonic() - quiet_from
    assert 0.15 <= first <= 0.45
    assert 0.35 <= second <= 0.8
    await asyncio.sleep(0.5)  # a busy consumer: nothing was waiting, no wake-up queued
    store.publish(message, {"type": "done"})
    store.close(message)
    batch = await _next_within(subscription, 1)
    assert batch is not None
    assert [e.data["type"] for e in batch] == ["done"]
    with pytest.raises(StopAsyncIteration):
        await _next_within(subscription, 1)


async def test_events_published_while_the_consumer_is_busy_with_a_batch_come_at_once():
    """A consumer that awaits while handling a batch (a slow client) gets what was published
    meanwhile as soon as it asks, not at the next heartbeat."""
    store = MemoryEventLog()
    message = uuid.uuid4()
    store.create(message, uuid.uuid4())
    subscription = store.subscribe(message, 0, 30)
    store.publish(message, {"type": "start"})
    assert [e.id for e in await _next_within(subscription, 1)] == [1]
    store.publish(message, {"type": "delta", "content": "x"})  # the consumer is busy
    store.publish(message, {"type": "done"})
    store.close(message)
    batch = await _next_within(subscription, 1)
    assert batch is not None
    assert [e.id for e in batch] == [2, 3]
    with pytest.raises(StopAsyncIteration):
        await _next_within(subscription, 1)


async def test_heartbeat_timer_ends_with_the_subscription() -> None:
    store = MemoryEventLog()
    message = uuid.uuid4()
    store.create(message, uuid.uuid4())
    loop = asyncio.get_running_loop()

    def heartbeat_timers() -> int:
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        return sum(
            1
            for handle in scheduled
            if not handle.cancelled()
            and type(getattr(handle._callback, "__self__", None)).__name__ == "_Quiet"
        )

    subscription = store.subscribe(message, 0, 0.05)
    store.publish(message, {"type": "start"})
    await _next_within(subscription, 1)
    assert heartbeat_timers() == 1
    await subscription.aclose()
    assert heartbeat_timers() == 0


def test_events_keep_only_their_frame() -> None:
    """A stream's events stay in memory for resuming: each must cost about its own size
    (orjson's output alone holds a 4 KiB buffer)."""
    data = {"type": "delta", "content": "word"}
    event = encode_event(3, data)
    assert json.loads(event.payload) == data
    assert event.frame == b"data: " + event.payload + b"\nid: 3\n\n"
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode_event(index, data) for index in range(1000)]
        per_event = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_event < 1024
