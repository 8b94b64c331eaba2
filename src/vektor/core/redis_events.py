"""The change feed on Redis, shared by every instance: one Redis Stream per user.

A cursor is the Redis entry id (`<ms>-<seq>`). A cursor older than the stream's oldest
entry, or not an id at all, asks the client to resync. When Redis is unreachable, a
change is logged and dropped (the data itself is in the database; the client resyncs) and
followers retry quietly.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from vektor.core.events import HISTORY_PER_USER, RESYNC, ChangeEvent
from vektor.core.redis_batch import CommandBatch

ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}", re.ASCII)
FEED_TTL_S = 30 * 24 * 3600
EXPIRY_REFRESH_S = 3600.0
MAX_EXPIRY_ENTRIES = 10_000  # feeds whose last expiry refresh one process remembers
RETRY_S = 1.0


def _newer(a: str, b: str) -> bool:
    """Whether entry id `a` comes after `b`."""
    ams, aseq = (int(x) for x in a.split("-"))
    bms, bseq = (int(x) for x in b.split("-"))
    return (ams, aseq) > (bms, bseq)


class RedisEventBus:
    """Change feeds in Redis Streams (XADD with a bounded length, XREAD to follow)."""

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        reader: Redis | None = None,
        *,
        batch: CommandBatch | None = None,
    ) -> None:
        self.redis: Any = redis  # redis-py's return types depend on the protocol version
        # XREAD blocks up to the SSE ping: its client's socket timeout must be longer.
        self.reader: Any = reader if reader is not None else redis
        self.namespace = namespace
        # Entries go out with the other commands of the same turn (the stream slots', when
        # the app shares its batch with them).
        self.batch = batch if batch is not None else CommandBatch(redis)
        # When this process last pushed back a feed's expiry (monotonic seconds).
        self._expiry_set: dict[uuid.UUID, float] = {}

    def _expiry_due(self, user_id: uuid.UUID) -> bool:
        """Whether this publish should push back the feed's expiry: at most once per
        EXPIRY_REFRESH_S per feed and process, so that the 30 days run from a write at most
        that long ago, and a chat answer's two changes cost one command each."""
        now = time.monotonic()
        last = self._expiry_set.get(user_id)
        if last is not None and now - last < EXPIRY_REFRESH_S:
            return False
        if len(self._expiry_set) >= MAX_EXPIRY_ENTRIES:
            self._expiry_set.clear()
        self._expiry_set[user_id] = now
        return True

    def _key(self, user_id: uuid.UUID) -> str:
        return f"{self.namespace}:feed:{user_id}"

    async def publish(self, user_id: uuid.UUID, kind: str, object_id: object = None) -> None:
        """Append the change to the user's stream."""
        fields = {"type": kind, "at": datetime.now(UTC).isoformat()}
        if object_id is not None:
            fields["id"] = str(object_id)
        key = self._key(user_id)
        pairs = [part for pair in fields.items() for part in pair]
        try:
            await self.batch.call("XADD", key, "MAXLEN", HISTORY_PER_USER, "*", *pairs)
            if self._expiry_due(user_id):
                await self.batch.call("EXPIRE", key, FEED_TTL_S)
        except (RedisError, OSError) as exc:
            self._expiry_set.pop(user_id, None)
            logger.warning(
                "change feed: Redis unreachable, {} dropped: {}", kind, type(exc).__name__
            )

    @staticmethod
    def _event(entry_id: bytes | str, fields: dict[bytes, bytes]) -> ChangeEvent:
        cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        found = {k.decode(): v.decode() for k, v in fields.items()}
        return ChangeEvent(cursor=cursor, type=found["type"], id=found.get("id"), at=found["at"])

    async def current(self, user_id: uuid.UUID) -> str:
        """The id of the newest entry ("0-0" when there is none)."""
        try:
            newest = await self.redis.xrevrange(self._key(user_id), count=1)
        except (RedisError, OSError):
            return "0-0"
        return self._event(*newest[0]).cursor if newest else "0-0"

    async def _behind(self, user_id: uuid.UUID, cursor: str) -> bool:
        """Whether entries after `cursor` may have been trimmed away."""
        oldest = await self.redis.xrange(self._key(user_id), count=1)
        if not oldest:
            return False
        first = self._event(*oldest[0]).cursor
        # The cursor must be at least the entry just before the oldest one kept.
        return (
            _newer(first, cursor) and await self.redis.xlen(self._key(user_id)) >= HISTORY_PER_USER
        )

    async def since(self, user_id: uuid.UUID, cursor: str | None) -> tuple[list[ChangeEvent], bool]:
        """Entries after the cursor; resync if it is not an entry id or is too old."""
        if cursor is None or ENTRY_ID.fullmatch(cursor) is None:
            return [], True
        try:
            if await self._behind(user_id, cursor):
                return [], True
            entries = await self.redis.xrange(self._key(user_id), min=f"({cursor}")
        except (RedisError, OSError):
            return [], True
        return [self._event(*entry) for entry in entries], False

    async def follow(
        self, user_id: uuid.UUID, cursor: str | None, ping_s: float
    ) -> AsyncIterator[ChangeEvent | None]:
        """Missed entries (or a resync marker), then live ones, until the client leaves."""
        key = self._key(user_id)
        if cursor is None:
            position = await self.current(user_id)
        elif ENTRY_ID.fullmatch(cursor) is None or await self._safe_behind(user_id, cursor):
            position = await self.current(user_id)
            yield ChangeEvent(
                cursor=position, type=RESYNC, id=None, at=datetime.now(UTC).isoformat()
            )
        else:
            position = cursor
        block_ms = max(1, int(ping_s * 1000))
        while True:
            try:
                found = await self.reader.xread({key: position}, block=block_ms, count=100)
            except (RedisError, OSError) as exc:
                logger.warning("change feed: Redis unreachable: {}", type(exc).__name__)
                await asyncio.sleep(RETRY_S)
                yield None
                continue
            if not found:
                yield None
                continue
            for entry in found[0][1]:
                event = self._event(*entry)
                position = event.cursor
                yield event

    async def _safe_behind(self, user_id: uuid.UUID, cursor: str) -> bool:
        try:
            return await self._behind(user_id, cursor)
        except (RedisError, OSError):
            return True

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self.redis.aclose()
        if self.reader is not self.redis:
            await self.reader.aclose()
