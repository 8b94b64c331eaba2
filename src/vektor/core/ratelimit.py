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

SWEEP_INTERVAL_S = 1.0


def _redis_storage_uri(redis_url: str) -> str:
    """`limits` names its async Redis backend `async+redis://`."""
    if redis_url.startswith(("redis://", "rediss://", "unix://")):
        return "async+" + redis_url
    return redis_url


class SweptMemoryStorage(MemoryStorage):
    """`limits`' in-process storage, sweeping out expired counters at most once per
    `sweep_interval_s`.

    The library's own starts a sweep over every counter on each hit whose previous sweep
    has ended, so a hit cost as much as the counters alive (one per user, address, account
    name or key seen in the window): 0.17 ms with 1,000 of them, 1.7 ms with 20,000. What is
    counted does not change: a counter read after its expiry is dropped by `get`, as
    before; only an idle counter's memory is freed up to `sweep_interval_s` later."""

    def __init__(self, sweep_interval_s: float = SWEEP_INTERVAL_S) -> None:
        super().__init__()
        self.sweep_interval_s = sweep_interval_s
        self._next_sweep = 0.0

    async def _MemoryStorage__schedule_expiry(self) -> None:
        """The library's hook, called on every hit (name-mangled in its class)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval_s
        await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


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
            storage = SweptMemoryStorage()
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
