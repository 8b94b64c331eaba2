"""MAX_CONCURRENT_STREAMS across processes: leases in the machine's Redis (a namespace of
their own, deleted afterwards), each RedisStreamSlots standing for one process."""

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL, scripted
from tests.support.redis_batch import record_pipelines
from tests.support.upstream import free_port
from vektor.answers.admission import StreamSlots
from vektor.answers.redis_admission import RedisStreamSlots
from vektor.core.errors import RateLimited
from vektor.state import state_of

HOLA = {"role": "user", "content": "Hola"}


def process(namespace, limit=2, **options):
    return RedisStreamSlots(Redis.from_url(REDIS_URL), namespace, limit, **options)


async def test_one_budget_across_processes(namespace):
    a, b = process(namespace), process(namespace)
    user, other = uuid.uuid4(), uuid.uuid4()
    try:
        first = await a.take(user)
        await b.take(user)
        for slots in (a, b):
            with pytest.raises(RateLimited):
                await slots.take(user)
        await b.take(other)  # another user's budget is their own
        await a.release(first)
        await b.take(user)  # a slot given back on A is free on B
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_dead_process_gives_its_slots_back_and_a_live_one_keeps_them(namespace):
    live, dying, other = (process(namespace, lease_s=0.6) for _ in range(3))
    user = uuid.uuid4()
    live.start()
    try:
        await live.take(user)
        await dying.take(user)
        await dying.aclose()  # stops renewing without giving its lease back, as a crash would
        with pytest.raises(RateLimited):
            await other.take(user)
        await asyncio.sleep(1.5)  # past the dead lease; the live one was renewed meanwhile
        await other.take(user)
        with pytest.raises(RateLimited):
            await other.take(user)
    finally:
        await live.aclose()
        await other.aclose()


async def test_without_redis_each_process_counts_its_own():
    down = RedisStreamSlots(
        Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5),
        "vektor-test-down",
        2,
    )
    user = uuid.uuid4()
    try:
        slots = [await down.take(user), await down.take(user)]
        with pytest.raises(RateLimited):
            await down.take(user)
        await down.release(slots[0])
        assert down.taken[user] == 1
    finally:
        await down.aclose()


async def test_in_memory_slots_are_counted_per_user():
    slots = StreamSlots(1)
    user = uuid.uuid4()
    slot = await slots.take(user)
    with pytest.raises(RateLimited):
        await slots.take(user)
    await slots.take(uuid.uuid4())
    await slots.release(slot)
    await slots.take(user)


async def test_an_answers_last_feed_entry_and_its_slot_release_go_out_as_one_pipeline(
    chat_harness, upstream, namespace
):
    """With Redis the change feed and the slots share the app's command batch, and
    `finish_answer` starts the feed's entry and the release together: one pipeline."""
    chat = await chat_harness([scripted(upstream)], redis_url=REDIS_URL, redis_namespace=namespace)
    state = state_of(chat.app)
    batch = state.pipeline.slots.batch
    assert state.events.batch is batch
    sent = record_pipelines(batch)
    status, events, _ = await chat.stream({"model": "scripted", "messages": [HOLA]})
    assert status == 200
    assert events[-1]["type"] == "done"
    (last,) = [pipeline for pipeline in sent if "ZREM" in pipeline]
    assert sorted(last) == ["XADD", "ZREM"]  # the feed's conversation.updated and the release
