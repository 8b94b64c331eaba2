"""The response cache on Redis, shared by every instance: one string per entry,
`<ns>:rcache:<key>`, holding the compressed entry and expiring after its model's
`cache_ttl_s`. Redis evicts by its own policy (`maxmemory-policy`), not by
RESPONSE_CACHE_MAX_ENTRIES.

Redis that cannot be reached is a miss (and an entry not kept), logged, never an error
of the request; only emptying the cache needs Redis (503 without it).
"""

from __future__ import annotations

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from vektor.core.errors import Unavailable

UNREACHABLE = (RedisError, OSError)
SCAN_BATCH = 500


class RedisResponseStore:
    """Entries in Redis with their TTL."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.prefix = f"{namespace}:rcache:"

    async def get(self, key: str) -> bytes | None:
        """The entry's bytes; None when absent, expired or Redis unreachable."""
        try:
            value = await self.redis.get(self.prefix + key)
        except UNREACHABLE as exc:
            logger.warning("response cache: Redis unreachable, a miss: {}", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl_s: int) -> None:
        """Keep the entry for `ttl_s` seconds; dropped (logged) when Redis is unreachable."""
        if ttl_s <= 0:
            return
        try:
            await self.redis.set(self.prefix + key, value, ex=ttl_s)
        except UNREACHABLE as exc:
            logger.warning("response cache: Redis unreachable, answer not kept: {}", exc)

    async def clear(self) -> int:
        """Remove every entry of this namespace, on every instance's behalf."""
        removed = 0
        try:
            batch: list[bytes] = []
            async for name in self.redis.scan_iter(match=self.prefix + "*", count=SCAN_BATCH):
                batch.append(name)
                if len(batch) >= SCAN_BATCH:
                    removed += await self.redis.unlink(*batch)
                    batch.clear()
            if batch:
                removed += await self.redis.unlink(*batch)
        except UNREACHABLE as exc:
            raise Unavailable("The response cache (Redis) cannot be reached") from exc
        return removed

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.redis.aclose()
