"""The Redis change feed and chat stream store, against the machine's Redis (a namespace of
their own, deleted afterwards)."""

import asyncio
import uuid

from redis.asyncio import Redis

from tests.conftest import REDIS_URL
from vektor.answers.redis_event_log import RedisEventLog
from vektor.core.events import RESYNC
from vektor.core.redis_events import RedisEventBus


async def test_change_feed_since_follow_and_resync(namespace):
    bus = RedisEventBus(Redis.from_url(REDIS_URL), namespace)
    user = uuid.uuid4()
    try:
        start = await bus.current(user)
        assert start == "0-0"
        for kind in ("profile.updated", "preferences.updated", "conversation.created"):
            await bus.publish(user, kind, user)
        found, resync = await bus.since(user, start)
        assert not resync
        assert [e.type for e in found] == [
            "profile.updated",
            "preferences.updated",
            "conversation.created",
        ]
        later, _ = await bus.since(user, found[0].cursor)
        assert [e.type for e in later] == ["preferences.updated", "conversation.created"]
        for bad in ("nope", "1-2-3", "²-1", ""):
            assert (await bus.since(user, bad))[1] is True
        follower = bus.follow(user, found[-1].cursor, ping_s=0.2)
        assert await anext(follower) is None  # idle: a heartbeat
        await bus.publish(user, "device.removed", "dev-1")
        live = await anext(follower)
        while live is None:
            live = await anext(follower)
        assert (live.type, live.id) == ("device.removed", "dev-1")
        marker = await anext(bus.follow(user, "garbage", ping_s=0.2))
        assert marker.type == RESYNC
    finally:
        await bus.aclose()


async def test_streams_mirror_to_another_store(namespace):
    writer = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60)
    reader = RedisEventLog(Redis.from_url(REDIS_URL), namespace, retention_s=60)
    cancelled = []
    writer.start(on_cancel=cancelled.append)
    reader.start(on_cancel=lambda _: None)
    message, owner = uuid.uuid4(), uuid.uuid4()
    try:
        writer.create(message, owner)
        for word in ("uno", "dos", "tres"):
            writer.publish(message, {"type": "delta", "content": word})
        await writer.flush()
        assert await reader.owner(message) == owner
        assert await reader.owner(uuid.uuid4()) is None
        assert await reader.cancel_elsewhere(message) is True
        for _ in range(50):
            if cancelled:
                break
            await asyncio.sleep(0.02)
        assert cancelled == [message]

        async def read_all(after):
            events = []
            async for batch in reader.subscribe(message, after, ping_s=0.2):
                events += batch or []
            return events

        task = asyncio.create_task(read_all(1))
        await asyncio.sleep(0.1)
        writer.publish(message, {"type": "done", "finish_reason": "stop"})
        writer.close(message)
        events = await asyncio.wait_for(task, 5)
        assert [e.id for e in events] == [2, 3, 4]
        assert events[-1].data == {"type": "done", "finish_reason": "stop"}
        assert events[0].frame.startswith(b"data: ")
        assert await reader.cancel_elsewhere(message) is False  # finished
    finally:
        await writer.aclose()
        await reader.aclose()
