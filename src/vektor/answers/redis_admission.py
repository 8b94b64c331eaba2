"""Stream slots shared by every instance: one lease per answer in a sorted set per user.

A lease expires `LEASE_S` after its last renewal, so the slots of a process that died come
back by themselves; a live process renews its leases every third of that. Expiry uses
Redis's clock, so instances with skewed clocks agree. If Redis cannot be reached, a process
counts in memory instead (logged) rather than refusing every answer, as the rate limits
fail open.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from vektor.answers.admission import Slot, StreamSlots
from vektor.core.errors import RateLimited
from vektor.core.redis_batch import CommandBatch

LEASE_S = 30.0
UNREACHABLE = (RedisError, OSError)

# KEYS[1] the user's leases; ARGV: limit, member, lease in ms.
_TAKE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
# KEYS: users' lease sets; ARGV[1] the lease in ms, then one member per key.
_RENEW = """
local t = redis.call('TIME')
local expiry = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', expiry, ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
"""


class RedisStreamSlots(StreamSlots):
    """Slots as leases in Redis, shared by every instance."""

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        limit: int,
        *,
        lease_s: float = LEASE_S,
        batch: CommandBatch | None = None,
    ) -> None:
        super().__init__(limit)
        self.redis = redis
        self.namespace = namespace
        self.lease_ms = int(lease_s * 1000)
        self.held: dict[str, uuid.UUID] = {}  # this process's leases: member → user
        # The takes and releases of concurrent answers, and what else shares the batch.
        self.batch = batch if batch is not None else CommandBatch(redis)
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)
        self._renewer: asyncio.Task[None] | None = None

    def _key(self, user_id: uuid.UUID) -> str:
        return f"{self.namespace}:slots:{user_id}"

    async def take(self, user_id: uuid.UUID) -> Slot:
        """A lease among the user's slots on every instance, or 429."""
        token = uuid.uuid4().hex
        keys = [self._key(user_id)]
        args: list[int | str] = [self.limit, token, self.lease_ms]
        try:
            try:
                admitted = await self.batch.call("EVALSHA", self._take.sha, 1, *keys, *args)
            except NoScriptError:  # Redis restarted or flushed its scripts: load it again
                admitted = await self._take(keys=keys, args=args)
        except UNREACHABLE as exc:
            logger.warning("stream slots: Redis unreachable, counting in this process: {}", exc)
            return self.take_local(user_id)
        if not admitted:
            raise RateLimited(1, "Too many answers in progress")
        self.held[token] = user_id
        return Slot(user_id, token, shared=True)

    async def release(self, slot: Slot) -> None:
        """Give the lease back (or the local slot, when Redis was away at its start)."""
        if not slot.shared:
            self.release_local(slot.user_id)
            return
        self.held.pop(slot.token, None)
        try:
            await self.batch.call("ZREM", self._key(slot.user_id), slot.token)
        except UNREACHABLE as exc:
            logger.warning("stream slots: a lease was not released, it will expire: {}", exc)

    def start(self) -> None:
        """Renew this process's leases every third of their length."""
        self._renewer = asyncio.create_task(self._renew_forever(), name="stream-slot-leases")

    async def aclose(self) -> None:
        """Stop renewing (leases still held expire) and close the client."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await self.redis.aclose()

    async def renew(self) -> None:
        """Push back the expiry of every lease this process holds."""
        held = list(self.held.items())
        if held:
            keys = [self._key(user_id) for _, user_id in held]
            await self._renew(keys=keys, args=[self.lease_ms, *(token for token, _ in held)])

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.renew()
            except UNREACHABLE as exc:
                logger.warning("stream slots: leases not renewed: {}", exc)
