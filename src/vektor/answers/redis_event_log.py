"""Chat streams shared by every instance through Redis, so that an answer generated on one
instance can be resumed (Last-Event-ID) and cancelled on another.

The instance running a generation keeps its events in memory as well (its own clients read
them there, with no added latency) and mirrors them, in order, to a Redis Stream by a
background writer that pipelines whatever is queued. Other instances read the Redis Stream.
A cancel for a generation running elsewhere is published on a channel every instance
listens to. If Redis is unreachable, the local path keeps working and the mirror is
skipped, with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any

import orjson
from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from vektor.answers.event_log import LoggedEvent, MemoryEventLog, encode_event

SAFETY_TTL_S = 3600  # a stream whose instance died before closing it still goes away


class RedisEventLog:
    """MemoryEventLog for local generations, mirrored to Redis for the others."""

    def __init__(
        self, redis: Redis, namespace: str, retention_s: float = 600.0, reader: Redis | None = None
    ) -> None:
        self.redis: Any = redis  # redis-py's return types depend on the protocol version
        # XREAD blocks up to the SSE ping: its client's socket timeout must be longer.
        self.reader: Any = reader if reader is not None else redis
        self.namespace = namespace
        self.retention_s = retention_s
        self.local = MemoryEventLog(retention_s)
        self._queue: asyncio.Queue[tuple[str, uuid.UUID, Any]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._channel = f"{namespace}:chat:cancel"

    def _events_key(self, message_id: uuid.UUID) -> str:
        return f"{self.namespace}:chat:{message_id}:events"

    def _meta_key(self, message_id: uuid.UUID) -> str:
        return f"{self.namespace}:chat:{message_id}:meta"

    def start(self, on_cancel: Callable[[uuid.UUID], object]) -> None:
        """Run the writer, and the listener that hands cancels to `on_cancel`."""
        self._writer = asyncio.create_task(self._write_forever())
        self._listener = asyncio.create_task(self._listen_forever(on_cancel))

    # The generation side: synchronous, local first, mirrored in order.

    def create(self, message_id: uuid.UUID, owner: uuid.UUID) -> None:
        """Open a stream."""
        self.local.create(message_id, owner)
        self._queue.put_nowait(("create", message_id, owner))

    def publish(self, message_id: uuid.UUID, data: dict[str, Any]) -> int:
        """Append an event."""
        event_id = self.local.publish(message_id, data)
        self._queue.put_nowait(("event", message_id, self.local.last_event(message_id)))
        return event_id

    def close(self, message_id: uuid.UUID) -> None:
        """Mark the stream finished."""
        self.local.close(message_id)
        self._queue.put_nowait(("close", message_id, None))

    async def _write_forever(self) -> None:
        while True:
            ops = [await self._queue.get()]
            while not self._queue.empty():
                ops.append(self._queue.get_nowait())
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for kind, message_id, value in ops:
                        self._queue_op(pipe, kind, message_id, value)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                logger.warning(
                    "chat streams: Redis unreachable, {} events not shared: {}",
                    len(ops),
                    type(exc).__name__,
                )
            finally:
                for _ in ops:
                    self._queue.task_done()

    def _queue_op(self, pipe: Any, kind: str, message_id: uuid.UUID, value: Any) -> None:
        events, meta = self._events_key(message_id), self._meta_key(message_id)
        if kind == "create":
            pipe.hset(meta, mapping={"owner": str(value), "finished": "0"})
            pipe.expire(meta, SAFETY_TTL_S)
        elif kind == "event":
            assert isinstance(value, LoggedEvent)
            pipe.xadd(events, {"i": value.id, "d": value.payload})
            if value.id == 1:  # the first event creates the key; it expires with the meta
                pipe.expire(events, SAFETY_TTL_S)
        else:
            pipe.xadd(events, {"end": 1})
            pipe.hset(meta, "finished", "1")
            pipe.expire(events, int(self.retention_s))
            pipe.expire(meta, int(self.retention_s))

    async def flush(self) -> None:
        """Wait until what is queued has been written (or dropped, Redis being down)."""
        await self._queue.join()

    # The reading side: any instance.

    async def owner(self, message_id: uuid.UUID) -> uuid.UUID | None:
        """Whose stream it is: from memory when local, else from Redis."""
        local = self.local.local_owner(message_id)
        if local is not None:
            return local
        try:
            owner = await self.redis.hget(self._meta_key(message_id), "owner")
        except (RedisError, OSError):
            return None
        return uuid.UUID(owner.decode()) if owner else None

    async def cancel_elsewhere(self, message_id: uuid.UUID) -> bool:
        """Publish a cancel if the stream is still running on some instance."""
        try:
            finished = await self.redis.hget(self._meta_key(message_id), "finished")
            if finished != b"0":
                return False
            await self.redis.publish(self._channel, str(message_id))
        except (RedisError, OSError):
            return False
        return True

    async def _listen_forever(self, on_cancel: Callable[[uuid.UUID], object]) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        with contextlib.suppress(ValueError):
                            on_cancel(uuid.UUID(message["data"].decode()))
            except (RedisError, OSError) as exc:
                logger.warning("chat streams: cancel channel lost: {}", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def subscribe(
        self, message_id: uuid.UUID, after: int, ping_s: float
    ) -> AsyncGenerator[list[LoggedEvent] | None, None]:
        """Local streams from memory; others from the Redis Stream, replay then live."""
        if self.local.local_owner(message_id) is not None:
            async for ready in self.local.subscribe(message_id, after, ping_s):
                yield ready
            return
        key = self._events_key(message_id)
        position = "0-0"
        block_ms = max(1, int(ping_s * 1000))
        while True:
            try:
                found = await self.reader.xread({key: position}, block=block_ms, count=500)
            except (RedisError, OSError) as exc:
                logger.warning("chat streams: Redis unreachable: {}", type(exc).__name__)
                return
            if not found:
                yield None
                continue
            batch: list[LoggedEvent] = []
            for entry_id, fields in found[0][1]:
                position = entry_id
                if b"end" in fields:
                    if batch:
                        yield batch
                    return
                event_id = int(fields[b"i"])
                if event_id > after:
                    batch.append(encode_event(event_id, orjson.loads(fields[b"d"])))
            if batch:
                yield batch

    async def aclose(self) -> None:
        """Write what is queued, stop the tasks, close the pools."""
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self.flush()
        for task in (self._writer, self._listener):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.redis.aclose()
        if self.reader is not self.redis:
            await self.reader.aclose()
