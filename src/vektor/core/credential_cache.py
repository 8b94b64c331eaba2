"""Live credentials (login sessions, API keys) remembered per process, so that a request
with a credential seen a moment ago needs no trip to the database.

Revocation must still take effect at once on every instance: once the revoking request
has returned, no instance may accept the credential. A broadcast (pub/sub) cannot promise
that, since it arrives some time after the revoking request has returned. So every cached
answer is checked against a revocation epoch instead:

- `LocalEpochs` (no Redis, one process): a counter bumped by every revocation; an entry
  filled under an older counter is stale. Nothing to ask anyone.
- `RedisEpochs` (REDIS_URL): a counter per user in Redis (or one for everyone, measured in
  bench/session_cache.py), bumped by every revocation after it is committed and read with
  every cached answer: one GET, where the database check was a query. When Redis cannot
  be read, the cache is emptied and the database answers until it can.

An entry records the epoch read *before* the database said the credential was live, so a
revocation committed in between leaves the entry stale. When the owner is only learned
from the database (an API key), the first entry is unconfirmed: its next use asks the
database once more, after reading the epoch.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from loguru import logger

from vektor.core.breaker import CircuitBreaker
from vektor.core.config import Settings

K = TypeVar("K")
V = TypeVar("V")

EPOCH_TTL_S = 7 * 24 * 3600  # far longer than any entry lives
REDIS_COOLDOWN_S = 1.0  # after a failed read, the database answers this long (doubling)


class EpochsUnavailable(Exception):
    """The shared epochs cannot be read now: ask the database."""


class Epochs(Protocol):
    """Revocation epochs: read with every cached answer, bumped by every revocation."""

    async def read(self, user_id: uuid.UUID) -> object:
        """The user's current epoch (raises EpochsUnavailable)."""
        ...

    async def bump(self, user_id: uuid.UUID) -> None:
        """Make every entry of the user stale, here and on every instance (never raises)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class LocalEpochs:
    """One process: a generation bumped by every revocation (of anyone: revocations are
    rare, and a stale entry costs one database check)."""

    def __init__(self) -> None:
        self.generation = 0

    async def read(self, user_id: uuid.UUID) -> object:
        """The process's generation."""
        return self.generation

    async def bump(self, user_id: uuid.UUID) -> None:
        """Every entry filled before now is stale."""
        self.generation += 1

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisEpochs:
    """Epochs in Redis, shared by every instance: `<ns>:revoked:<user>` (or `<ns>:revoked`
    for everyone when `per_user` is false), plus this process's own generation so that a
    revocation here takes effect here even when Redis is unreachable."""

    def __init__(self, redis: Any, namespace: str, *, per_user: bool = True) -> None:
        self.redis = redis
        self.namespace, self.per_user = namespace, per_user
        self.local = LocalEpochs()
        self.breaker = CircuitBreaker(base_s=REDIS_COOLDOWN_S, max_s=30.0)

    def _key(self, user_id: uuid.UUID) -> str:
        if self.per_user:
            return f"{self.namespace}:revoked:{user_id}"
        return f"{self.namespace}:revoked"

    async def read(self, user_id: uuid.UUID) -> object:
        """(this process's generation, the shared counter)."""
        now = time.monotonic()
        if not self.breaker.acquire(now):
            raise EpochsUnavailable
        try:
            shared = await self.redis.get(self._key(user_id))
        except Exception as exc:  # whatever went wrong, the database still answers
            self.breaker.record_failure(now)
            logger.warning("session cache: Redis unreachable: {}", type(exc).__name__)
            raise EpochsUnavailable from exc
        except BaseException:  # cancelled
            self.breaker.release()
            raise
        self.breaker.record_success()
        return self.local.generation, shared

    async def bump(self, user_id: uuid.UUID) -> None:
        """Bump here, then in Redis (a failure is logged: the other instances' entries then
        last at most their lifetime)."""
        await self.local.bump(user_id)
        key = self._key(user_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, EPOCH_TTL_S)
                await pipe.execute()
        except Exception as exc:  # the revocation itself is committed: never a 500
            logger.warning(
                "session cache: Redis unreachable, revocation of user {} not shared: {}",
                user_id,
                type(exc).__name__,
            )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()


@dataclass(slots=True)
class _Entry(Generic[V]):
    user_id: uuid.UUID
    value: V
    until: float  # time.monotonic()
    epoch: object
    confirmed: bool  # the database said "live" after `epoch` was read


_UNREAD = object()


class CredentialCache(Generic[K, V]):
    """At most `max_entries` live credentials, each for at most `lifetime_s` and never past
    its own expiry; the oldest goes first."""

    def __init__(self, epochs: Epochs, *, max_entries: int, lifetime_s: float) -> None:
        self.epochs = epochs
        self.max_entries, self.lifetime_s = max_entries, lifetime_s
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(
        self,
        key: K,
        user_id: uuid.UUID | None,
        load: Callable[[], Awaitable[tuple[uuid.UUID, V, float | None] | None]],
    ) -> tuple[uuid.UUID, V] | None:
        """The owner and value of a live credential, or None. `user_id` is the owner the
        credential claims (None if unknown); `load` asks the database: (owner, value, expiry
        as a Unix time or None), or None when the credential is not live."""
        entry = self._entries.get(key)
        if entry is not None and (
            entry.until <= time.monotonic() or (user_id is not None and entry.user_id != user_id)
        ):
            del self._entries[key]
            entry = None
        owner = entry.user_id if entry is not None else user_id
        epoch = _UNREAD
        if owner is not None:
            try:
                epoch = await self.epochs.read(owner)
            except EpochsUnavailable:
                self._entries.clear()  # revocations may go unseen meanwhile
                return _strip(await load())
            if entry is not None and entry.confirmed and entry.epoch == epoch:
                return entry.user_id, entry.value
        return await self._load(key, owner, epoch, load)

    async def _load(
        self,
        key: K,
        owner: uuid.UUID | None,
        epoch: object,
        load: Callable[[], Awaitable[tuple[uuid.UUID, V, float | None] | None]],
    ) -> tuple[uuid.UUID, V] | None:
        found = await load()
        if found is None:
            self._entries.pop(key, None)
            return None
        confirmed = epoch is not _UNREAD and found[0] == owner
        if not confirmed:
            try:  # read after the database: good for the next use, not for trust
                epoch = await self.epochs.read(found[0])
            except EpochsUnavailable:
                return _strip(found)
        self._put(key, found, epoch, confirmed)
        return _strip(found)

    def _put(
        self, key: K, found: tuple[uuid.UUID, V, float | None], epoch: object, confirmed: bool
    ) -> None:
        user_id, value, expires = found
        lifetime = self.lifetime_s
        if expires is not None:
            lifetime = min(lifetime, expires - time.time())
        if lifetime <= 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = _Entry(user_id, value, time.monotonic() + lifetime, epoch, confirmed)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _strip(found: tuple[uuid.UUID, V, float | None] | None) -> tuple[uuid.UUID, V] | None:
    return None if found is None else (found[0], found[1])


EPOCH_READ_TIMEOUT_S = 1.0  # read with every cached answer: slower counts as unreachable


def revocation_epochs(settings: Settings) -> Epochs:
    """What makes a cached session or key stale: this process's own counter, or with
    REDIS_URL counters in Redis that every instance reads (a Redis slower than
    EPOCH_READ_TIMEOUT_S counts as unreachable, and the database answers instead)."""
    if not settings.redis_url or not settings.session_cache:
        return LocalEpochs()
    from redis.asyncio import Redis

    client = Redis.from_url(
        settings.redis_url, socket_connect_timeout=1, socket_timeout=EPOCH_READ_TIMEOUT_S
    )
    per_user = settings.session_cache_epoch == "user"
    return RedisEpochs(client, settings.redis_namespace, per_user=per_user)


def credential_cache(
    settings: Settings, epochs: Epochs, lifetime_s: float
) -> CredentialCache[Any, Any] | None:
    """The per-process cache of live credentials, or None with SESSION_CACHE off."""
    if not settings.session_cache:
        return None
    return CredentialCache(
        epochs, max_entries=settings.session_cache_entries, lifetime_s=lifetime_s
    )
