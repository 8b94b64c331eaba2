"""Chat streams shared by every instance through Redis, so that an answer generated on one
instance can be resumed (Last-Event-ID) and cancelled on another.

The instance running a generation keeps its events in memory as well (its own clients read
them there, with no added latency) and mirrors them, in order, to a Redis Stream by a
background writer: every `MIRROR_INTERVAL_S` at most, one pipeline carries what every
stream has to mirror, one entry per stream with all its new events. Other instances read
the Redis Stream: its first entry names the stream's owner, its last one (`end`) says that
it finished, so opening and finishing a stream cost one entry and its expiry each. The
opening of an answer's stream is written ahead (`announce`, in the command batch other
requests share) while its deployment is asked, so its first event need not wait for it;
`create` writes it when it was not. A cancel
for a generation running elsewhere is published on a channel every instance listens to. If
Redis is unreachable, the local path keeps working and the mirror is skipped, with a log
line.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from vektor.answers.event_log import LoggedEvent, MemoryEventLog, encode_event
from vektor.core.redis_batch import CommandBatch

SAFETY_TTL_S = 3600  # a stream whose instance died before closing it still goes away
# How long an event may wait to be mirrored, so that a stream's events go out together:
# an answer of 20 pieces over 200 ms is a handful of entries, not one per event. A client
# resuming on another instance sees each event at most this much later.
MIRROR_INTERVAL_S = 0.05
# How long a stream's first event may wait for its opening to be written: a Redis that
# stalls (rather than refusing) delays a first token by no more than this, after which the
# answer goes on as if the write had failed.
SHARE_WAIT_S = 1.0


@dataclass(slots=True)
class _Pending:
    """What a stream has to mirror at the next write."""

    owner: uuid.UUID | None = None  # set when the stream was opened since the last write
    events: list[LoggedEvent] = field(default_factory=list)
    closed: bool = False


class RedisEventLog:
    """MemoryEventLog for local generations, mirrored to Redis for the others."""

    announces = True

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        retention_s: float = 600.0,
        reader: Redis | None = None,
        *,
        interval_s: float = MIRROR_INTERVAL_S,
        batch: CommandBatch | None = None,
    ) -> None:
        self.redis: Any = redis  # redis-py's return types depend on the protocol version
        # XREAD blocks up to the SSE ping: its client's socket timeout must be longer.
        self.reader: Any = reader if reader is not None else redis
        self.namespace = namespace
        self.retention_s = retention_s
        self.interval_s = interval_s
        self.local = MemoryEventLog(retention_s)
        self._pending: dict[uuid.UUID, _Pending] = {}  # in order of first change
        self._due = 0.0  # (loop time) when the oldest pending event must be written
        self._work = asyncio.Event()  # something is pending
        self._hurry = asyncio.Event()  # a stream opened or finished, or a flush waits
        self._flushing = False  # write everything pending at once
        self._written = asyncio.Event()  # a write has ended
        self._writing = False
        self._writer: asyncio.Task[None] | None = None
        self._opening: dict[uuid.UUID, asyncio.Future[None]] = {}  # streams not yet shared
        # Openings written ahead (`announce`), in the batch other requests' commands share.
        self.batch = batch if batch is not None else CommandBatch(redis)
        self._announced: dict[uuid.UUID, bool] = {}  # stream → whether it was written
        self._listener: asyncio.Task[None] | None = None
        self._channel = f"{namespace}:chat:cancel"

    def _events_key(self, message_id: uuid.UUID) -> str:
        return f"{self.namespace}:chat:{message_id}:events"

    def start(self, on_cancel: Callable[[uuid.UUID], object]) -> None:
        """Run the writer, and the listener that hands cancels to `on_cancel`."""
        self._writer = asyncio.create_task(self._write_forever())
        self._listener = asyncio.create_task(self._listen_forever(on_cancel))

    # The generation side: synchronous, local first, mirrored in order.

    def _pend(self, message_id: uuid.UUID) -> _Pending:
        pending = self._pending.get(message_id)
        if pending is None:
            if not self._pending:
                self._due = asyncio.get_running_loop().time() + self.interval_s
                self._work.set()
            pending = self._pending[message_id] = _Pending()
        return pending

    async def announce(self, message_id: uuid.UUID, owner: uuid.UUID) -> None:
        """Write the stream's opening entry now, while its answer's deployment is asked,
        so that its first event finds it written. If Redis does not answer in time,
        `create` writes it as before, without holding the first event back again."""
        key = self._events_key(message_id)
        try:
            async with asyncio.timeout(SHARE_WAIT_S):
                await asyncio.gather(
                    self.batch.call("XADD", key, "*", "owner", str(owner)),
                    self.batch.call("EXPIRE", key, SAFETY_TTL_S),
                )
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("chat streams: an opening not written ahead: {}", type(exc).__name__)
            self._announced[message_id] = False
            return
        self._announced[message_id] = True

    async def withdraw(self, message_id: uuid.UUID) -> None:
        """Delete an announced stream whose answer did not start."""
        if self._announced.pop(message_id, False):
            with contextlib.suppress(RedisError, OSError):
                await self.batch.call("DEL", self._events_key(message_id))

    def create(self, message_id: uuid.UUID, owner: uuid.UUID) -> None:
        """Open a stream: its opening entry is written at once, unless it was announced."""
        self.local.create(message_id, owner)
        written = self._announced.pop(message_id, None)
        if written:
            return
        self._pend(message_id).owner = owner
        self._hurry.set()  # another instance may be asked for it as soon as it starts
        if self._writer is not None and written is None:
            self._opening[message_id] = asyncio.get_running_loop().create_future()

    async def shared(self, message_id: uuid.UUID) -> None:
        """Wait until another instance can find the stream: its opening is written (or
        Redis was found unreachable). A client told the stream's id before that could ask
        another instance for it and be told it does not exist."""
        opening = self._opening.get(message_id)
        if opening is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHARE_WAIT_S):
                    await asyncio.shield(opening)

    def publish(self, message_id: uuid.UUID, data: dict[str, Any]) -> int:
        """Append an event."""
        event_id = self.local.publish(message_id, data)
        self._pend(message_id).events.append(self.local.last_event(message_id))
        return event_id

    def close(self, message_id: uuid.UUID) -> None:
        """Mark the stream finished (once: a second close mirrors nothing)."""
        if self.local.is_open(message_id):
            self.local.close(message_id)
            self._pend(message_id).closed = True
            self._hurry.set()  # another instance must not cancel a finished stream

    async def _write_forever(self) -> None:
        """One pipeline per write, one entry per stream however many events it holds.
        Events wait up to `interval_s`; streams that opened or finished go at once (with
        their events, in order), and a flush takes everything."""
        loop = asyncio.get_running_loop()
        while True:
            await self._work.wait()
            if not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(self._due):
                        await self._hurry.wait()
            self._hurry.clear()
            batch = self._take(everything=self._flushing or loop.time() >= self._due)
            self._writing = True
            try:
                await self._write(batch)
            finally:
                self._writing = False
                self._written.set()
                self._shared([m for m, pending in batch.items() if pending.owner is not None])

    def _shared(self, message_ids: list[uuid.UUID]) -> None:
        """Wake whoever waits for these streams' openings to be written."""
        for message_id in message_ids:
            opening = self._opening.pop(message_id, None)
            if opening is not None and not opening.done():
                opening.set_result(None)

    def _take(self, *, everything: bool) -> dict[uuid.UUID, _Pending]:
        """What to write now: everything, or only the streams that opened or finished."""
        if everything:
            batch, self._pending = self._pending, {}
            self._flushing = False
        else:
            batch = {m: p for m, p in self._pending.items() if p.owner is not None or p.closed}
            for message_id in batch:
                del self._pending[message_id]
        if not self._pending:
            self._work.clear()
        return batch

    async def _write(self, batch: dict[uuid.UUID, _Pending]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for message_id, pending in batch.items():
                    self._queue_ops(pipe, message_id, pending)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning(
                "chat streams: Redis unreachable, {} events not shared: {}",
                sum(len(p.events) for p in batch.values()),
                type(exc).__name__,
            )

    def _queue_ops(self, pipe: Any, message_id: uuid.UUID, pending: _Pending) -> None:
        """The stream's changes as commands. An entry holds consecutive events: `i` the
        first one's id, `d` their JSON texts one per line (JSON holds no raw line break),
        `owner` when it opens the stream, `end` when the stream finished with them."""
        fields: dict[str, Any] = {}
        if pending.owner is not None:
            fields["owner"] = str(pending.owner)
        if pending.events:
            fields["i"] = pending.events[0].id
            fields["d"] = b"\n".join(event.payload for event in pending.events)
        if pending.closed:
            fields["end"] = 1
        if not fields:
            return
        events = self._events_key(message_id)
        pipe.xadd(events, fields)
        if pending.closed:
            pipe.expire(events, int(self.retention_s))
        elif pending.owner is not None or (pending.events and pending.events[0].id == 1):
            pipe.expire(events, SAFETY_TTL_S)  # the first entry creates the key

    async def flush(self) -> None:
        """Wait until what is pending has been written (or dropped, Redis being down)."""
        while self._pending or self._writing:
            self._flushing = True
            self._hurry.set()
            self._written.clear()
            await self._written.wait()

    # The reading side: any instance.

    async def owner(self, message_id: uuid.UUID) -> uuid.UUID | None:
        """Whose stream it is: from memory when local, else from its first entry in Redis."""
        local = self.local.local_owner(message_id)
        if local is not None:
            return local
        try:
            first = await self.redis.xrange(self._events_key(message_id), count=1)
        except (RedisError, OSError):
            return None
        owner = first[0][1].get(b"owner") if first else None
        return uuid.UUID(owner.decode()) if owner else None

    async def cancel_elsewhere(self, message_id: uuid.UUID) -> bool:
        """Publish a cancel if the stream is still running on some instance: it exists and
        its last entry is not its end."""
        try:
            last = await self.redis.xrevrange(self._events_key(message_id), count=1)
            if not last or b"end" in last[0][1]:
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

    def subscribe(
        self, message_id: uuid.UUID, after: int, ping_s: float
    ) -> AsyncGenerator[list[LoggedEvent] | None, None]:
        """Local streams from memory (their own generator: no layer per event); others from
        the Redis Stream, replay then live."""
        if self.local.local_owner(message_id) is not None:
            return self.local.subscribe(message_id, after, ping_s)
        return self._follow(message_id, after, ping_s)

    async def _follow(
        self, message_id: uuid.UUID, after: int, ping_s: float
    ) -> AsyncGenerator[list[LoggedEvent] | None, None]:
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
                batch += _entry_events(fields, after)
                if b"end" in fields:
                    if batch:
                        yield batch
                    return
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
        self._shared(list(self._opening))
        await self.redis.aclose()
        if self.reader is not self.redis:
            await self.reader.aclose()


def _entry_events(fields: dict[bytes, bytes], after: int) -> list[LoggedEvent]:
    """The events of one entry whose id is above `after`."""
    if b"i" not in fields:
        return []
    first = int(fields[b"i"])
    return [
        encode_event(first + offset, orjson.loads(payload))
        for offset, payload in enumerate(fields[b"d"].split(b"\n"))
        if first + offset > after
    ]
