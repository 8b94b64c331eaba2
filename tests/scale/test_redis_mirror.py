"""How the chat stream mirror writes to Redis (the machine's Redis, a namespace of the
test's own): a stream's events go out together, its start and its end at once."""

import asyncio
import contextlib
import time
import uuid

from redis.asyncio import Redis

from tests.conftest import REDIS_URL, scripted
from tests.support.redis_batch import record_pipelines
from tests.support.upstream import free_port
from vektor.answers.redis_event_log import MIRROR_INTERVAL_S, SHARE_WAIT_S, RedisEventLog
from vektor.state import state_of

SLOW_S = 5.0  # a mirror interval longer than any wait below


async def read_all(log, message, after=0):
    events = []
    async for batch in log.subscribe(message, after, ping_s=0.2):
        events += batch or []
    return events


async def test_a_streams_events_are_mirrored_together_and_in_order(namespace):
    writer = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60)
    reader = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60)
    writer.start(on_cancel=lambda _: None)
    message = uuid.uuid4()
    try:
        started = time.monotonic()
        writer.create(message, uuid.uuid4())
        writer.publish(message, {"type": "start"})
        for piece in range(20):
            writer.publish(message, {"type": "delta", "content": f"w{piece}\nline"})
            await asyncio.sleep(0.005)
        writer.publish(message, {"type": "done", "finish_reason": "stop"})
        writer.close(message)
        writer.close(message)  # a second close mirrors nothing
        elapsed = time.monotonic() - started
        await writer.flush()
        entries = await writer.redis.xrange(writer._events_key(message))
        # 22 events and the end in a few entries: the start, one per 50 ms, the end.
        bound = min(elapsed / MIRROR_INTERVAL_S + 3, 22)  # 23 when written one by one
        assert 2 <= len(entries) <= bound, (len(entries), elapsed)
        assert sum(b"end" in fields for _, fields in entries) == 1
        events = await asyncio.wait_for(read_all(reader, message, after=3), 5)
        assert [e.id for e in events] == list(range(4, 23))
        assert events[0].data == {"type": "delta", "content": "w2\nline"}
        assert events[-1].data == {"type": "done", "finish_reason": "stop"}
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_a_stream_is_known_elsewhere_at_once_and_its_end_too(namespace):
    writer = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60, interval_s=SLOW_S)
    reader = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60)
    writer.start(on_cancel=lambda _: None)
    message, owner = uuid.uuid4(), uuid.uuid4()
    try:
        started = time.monotonic()
        writer.create(message, owner)
        writer.publish(message, {"type": "start"})
        while await reader.owner(message) is None:
            assert time.monotonic() - started < SLOW_S / 2, "the start waited for the interval"
            await asyncio.sleep(0.01)
        assert await reader.cancel_elsewhere(message) is True  # running
        for piece in ("uno", "dos"):
            writer.publish(message, {"type": "delta", "content": piece})
        await asyncio.sleep(0.2)
        # The pieces wait for the interval; the end takes them along at once, in order.
        assert await writer.redis.xlen(writer._events_key(message)) == 1
        writer.publish(message, {"type": "done", "finish_reason": "stop"})
        writer.close(message)
        events = await asyncio.wait_for(read_all(reader, message), SLOW_S / 2)
        assert [e.data["type"] for e in events] == ["start", "delta", "delta", "done"]
        assert await reader.cancel_elsewhere(message) is False  # finished
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_a_started_stream_can_be_found_elsewhere_once_shared(namespace):
    """`shared` returns once the opening is written, not at the next interval: a client
    that reads the stream's id from its first event finds it on any instance."""
    writer = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60, interval_s=SLOW_S)
    reader = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60)
    writer.start(on_cancel=lambda _: None)
    message, owner = uuid.uuid4(), uuid.uuid4()
    try:
        writer.create(message, owner)
        writer.publish(message, {"type": "start"})
        await asyncio.wait_for(writer.shared(message), SLOW_S / 2)
        assert await reader.owner(message) == owner
        await asyncio.wait_for(writer.shared(message), 0.1)  # once shared, at once
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_a_started_stream_is_not_held_back_when_redis_is_down(namespace):
    writer = RedisEventLog(Redis.from_url("redis://127.0.0.1:1"), namespace, interval_s=SLOW_S)
    writer.start(on_cancel=lambda _: None)
    message = uuid.uuid4()
    try:
        writer.create(message, uuid.uuid4())
        await asyncio.wait_for(writer.shared(message), SLOW_S / 2)
    finally:
        await writer.aclose()


async def test_a_started_stream_waits_a_bounded_time_for_a_stalled_redis(namespace):
    """A Redis that accepts the connection and never answers holds the first event back
    for SHARE_WAIT_S at most, not for the client's socket timeout."""

    async def silent(reader, writer):
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    writer = RedisEventLog(Redis.from_url(f"redis://127.0.0.1:{port}"), namespace)
    writer.start(on_cancel=lambda _: None)
    message = uuid.uuid4()
    try:
        writer.create(message, uuid.uuid4())
        started = time.monotonic()
        await asyncio.wait_for(writer.shared(message), SHARE_WAIT_S + 2)
        assert SHARE_WAIT_S - 0.1 <= time.monotonic() - started < SHARE_WAIT_S + 1
    finally:
        await writer.aclose()
        server.close()


async def test_an_announced_stream_is_found_elsewhere_before_it_opens_and_opens_once(namespace):
    """The opening written ahead (while the deployment is asked): the stream is found at
    once, `create` writes no second opening, and its events follow in order."""
    writer = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60, interval_s=SLOW_S)
    reader = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60)
    writer.start(on_cancel=lambda _: None)
    message, owner = uuid.uuid4(), uuid.uuid4()
    try:
        await writer.announce(message, owner)
        assert await reader.owner(message) == owner
        assert await reader.cancel_elsewhere(message) is True  # announced: about to run
        writer.create(message, owner)
        await asyncio.wait_for(writer.shared(message), 0.1)  # nothing left to wait for
        writer.publish(message, {"type": "start"})
        writer.publish(message, {"type": "done", "finish_reason": "stop"})
        writer.close(message)
        await writer.flush()
        entries = await writer.redis.xrange(writer._events_key(message))
        assert [b"owner" in fields for _, fields in entries] == [True, False]
        events = await asyncio.wait_for(read_all(reader, message), 5)
        assert [e.data["type"] for e in events] == ["start", "done"]
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_a_withdrawn_stream_is_gone(namespace):
    writer = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60, interval_s=SLOW_S)
    writer.start(on_cancel=lambda _: None)
    withdrawn = uuid.uuid4()
    try:
        await writer.announce(withdrawn, uuid.uuid4())
        await writer.withdraw(withdrawn)
        assert await writer.redis.exists(writer._events_key(withdrawn)) == 0
        assert await writer.owner(withdrawn) is None
    finally:
        await writer.aclose()


async def test_a_stalled_redis_holds_an_announced_streams_first_event_back_once(namespace):
    """The announcement waits SHARE_WAIT_S at most; `create` then leaves the opening to the
    writer without a second wait."""

    async def silent(reader, writer):
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    writer = RedisEventLog(Redis.from_url(f"redis://127.0.0.1:{port}"), namespace)
    writer.start(on_cancel=lambda _: None)
    message, owner = uuid.uuid4(), uuid.uuid4()
    try:
        started = time.monotonic()
        await writer.announce(message, owner)
        writer.create(message, owner)
        await asyncio.wait_for(writer.shared(message), 0.2)
        assert time.monotonic() - started < SHARE_WAIT_S + 0.5
    finally:
        await writer.aclose()
        server.close()


async def test_an_answers_stream_is_announced_in_the_shared_batch_and_withdrawn_if_it_fails(
    chat_harness, upstream, namespace
):
    """Through the app: the opening goes out with the commands other requests send (the
    slots', the feed's), the stream has one opening entry, and an answer that finds no
    deployment leaves no stream behind."""
    dead = {"name": "dead", "provider": "openai", "model": "m", "timeout_s": 2}
    dead["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    chat = await chat_harness(
        [scripted(upstream), dead], redis_url=REDIS_URL, redis_namespace=namespace
    )
    state = state_of(chat.app)
    batch = state.event_log.batch
    assert batch is state.pipeline.slots.batch
    sent = record_pipelines(batch)
    hola = [{"role": "user", "content": "Hola"}]
    status, events, _ = await chat.stream({"model": "scripted", "messages": hola})
    assert status == 200
    assert events[-1]["type"] == "done"
    assert ["XADD", "EXPIRE"] in [[c for c in p if c in ("XADD", "EXPIRE")] for p in sent]
    redis = Redis.from_url(REDIS_URL)
    try:
        key = f"{namespace}:chat:{events[0]['message_id']}:events"
        await state.event_log.flush()
        entries = await redis.xrange(key)
        assert [b"owner" in fields for _, fields in entries][:2] == [True, False]
        assert sum(b"owner" in fields for _, fields in entries) == 1
        status, _, _ = await chat.stream({"model": "dead", "messages": hola})
        assert status == 503
        assert await redis.keys(f"{namespace}:chat:*:events") == [key.encode()]
    finally:
        await redis.aclose()
