"""Quota counters on Redis, shared by every instance and advanced atomically.

One hash per user and UTC day, `<ns>:quota:<user>:<YYYY-MM-DD>` (an API key with limits of
its own: `<ns>:quota:key-<key>:<YYYY-MM-DD>`): `tokens` and `requests`
of the day, `nanos` the month's cost so far in nano-dollars. A missing hash (a new day, a
restart of Redis, a flush, its expiry) is built again from the usage rows, which are the
truth; increments only touch a hash that exists, so an answer is never counted twice. The
hash expires `REBUILD_S` after it was built: whatever an increment missed (Redis down at
that moment, an answer that finished while the hash was being built) is corrected from the
rows within that time.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vektor.usage.errors import CountersDown
from vektor.usage.pricing import from_nanos, to_nanos
from vektor.usage.repository import Owner

REBUILD_S = 300

_SEED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'tokens', ARGV[1], 'requests', ARGV[2], 'nanos', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return redis.call('HMGET', KEYS[1], 'tokens', 'requests', 'nanos')
"""
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'requests', 1)
  redis.call('HINCRBY', KEYS[1], 'nanos', ARGV[2])
end
return 0
"""

Counts = tuple[int, int, Decimal]  # tokens today, requests today, cost this month


class RedisQuotaCounters:
    """The counters of every instance, in Redis."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.namespace = namespace
        self._seed = redis.register_script(_SEED)
        self._add = redis.register_script(_ADD)

    def _key(self, owner: Owner, day: date) -> str:
        kind, owner_id = owner
        name = owner_id.hex if kind == "user" else f"key-{owner_id.hex}"
        return f"{self.namespace}:quota:{name}:{day.isoformat()}"

    async def get(self, owner: Owner, day: date) -> Counts | None:
        """The owner's counts of the day, or None when they must be built from the rows."""
        try:
            values = await self.redis.hmget(self._key(owner, day), ["tokens", "requests", "nanos"])
        except (RedisError, OSError) as exc:
            raise CountersDown(str(exc)) from exc
        return _counts(values)

    async def seed(self, owner: Owner, day: date, counts: Counts) -> Counts:
        """Store counts built from the rows, unless another instance did first; the counts
        that hold now."""
        tokens, requests, cost = counts
        key = self._key(owner, day)
        try:
            values = await self._seed(
                keys=[key], args=[tokens, requests, to_nanos(cost), REBUILD_S]
            )
        except (RedisError, OSError) as exc:
            raise CountersDown(str(exc)) from exc
        now = _counts(values)
        assert now is not None
        return now

    async def add(self, owner: Owner, day: date, tokens: int, cost: Decimal) -> None:
        """Count one answer, if the owner's hash of that day exists."""
        try:
            await self._add(keys=[self._key(owner, day)], args=[tokens, to_nanos(cost)])
        except (RedisError, OSError) as exc:
            raise CountersDown(str(exc)) from exc


def _counts(values: list[bytes | str | None]) -> Counts | None:
    """HMGET's tokens, requests and nanos; None when the hash is missing."""
    tokens, requests, nanos = values
    if tokens is None or requests is None or nanos is None:
        return None
    return int(tokens), int(requests), from_nanos(int(nanos))
