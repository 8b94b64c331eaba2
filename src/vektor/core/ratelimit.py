"""Rate limits from the `limits` library: in memory by default, Redis when configured.

Strategy: sliding-window counter (two fixed windows weighted by overlap), which keeps one
budget per key across every instance sharing the Redis storage at O(1) cost per hit.
When Redis cannot be reached the limiter fails open: the request passes and the outage is
logged, because refusing every login while the cache is down would be worse.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from loguru import logger

from vektor.core.errors import RateLimited
from vektor.core.metrics import RATE_LIMITED


def _redis_storage_uri(redis_url: str) -> str:
    """`limits` names its async Redis backend `async+redis://`."""
    if redis_url.startswith(("redis://", "rediss://", "unix://")):
        return "async+" + redis_url
    return redis_url


class RateLimiter:
    """Checks and counts hits against several keys at once."""

    def __init__(self, redis_url: str | None = None, *, namespace: str = "vektor") -> None:
        # The Redis client is imported only when Redis is used (it is large and slow to load).
        self._unreachable: tuple[type[BaseException], ...] = (OSError,)
        storage: Storage
        if redis_url:
            from redis.exceptions import RedisError

            self._unreachable = (RedisError, OSError)
            # redis-py (with hiredis), the client the rest of the app uses: its script call
            # costs less CPU than coredis's. The keys are the same with either client.
            found = storage_from_string(
                _redis_storage_uri(redis_url),
                key_prefix=namespace,
                implementation="redispy",
                socket_connect_timeout=2,
                socket_timeout=5,
            )
            assert isinstance(found, Storage)  # the async+ scheme gives an async storage
            storage = found
        else:
            storage = MemoryStorage()
        self.storage: Storage = storage
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item

    async def hit(self, limit: str, keys: Iterable[tuple[str, str]]) -> None:
        """Count one hit on every key; raise RateLimited if any is over its budget."""
        item = self._item(limit)
        retry_after = 0
        try:
            for scope, value in keys:
                if not await self.strategy.hit(item, scope, value):
                    RATE_LIMITED.labels(scope).inc()
                    stats = await self.strategy.get_window_stats(item, scope, value)
                    retry_after = max(retry_after, math.ceil(stats.reset_time - time.time()))
                    retry_after = max(retry_after, 1)
        except self._unreachable as exc:
            logger.warning("rate limit storage unreachable, failing open: {}", type(exc).__name__)
            return
        if retry_after:
            raise RateLimited(retry_after)

    async def reset(self) -> None:
        """Forget every counter (tests and administration)."""
        await self.storage.reset()

    async def close(self) -> None:
        """Release the storage's connections."""
        if hasattr(self.storage, "close"):
            await self.storage.close()
