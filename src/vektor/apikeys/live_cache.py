"""The API key check with its answers remembered (`core/credential_cache.py`), keyed by
the key's hash: a key live a moment ago is not looked up again until the entry is stale (a
revocation since), expired (the key's own expiry, or TOUCH_INTERVAL, so use is still
recorded) or evicted."""

from __future__ import annotations

import uuid
from datetime import datetime

from vektor.apikeys.hot_repository import ApiKeyHotRepository
from vektor.core.credential_cache import CredentialCache
from vektor.core.security import hash_token


class LiveKeys:
    """`ApiKeyHotRepository.owner`, through the cache when there is one."""

    def __init__(
        self,
        repository: ApiKeyHotRepository,
        cache: CredentialCache[str, uuid.UUID] | None,
    ) -> None:
        self.repository, self.cache = repository, cache

    async def owner(self, key: str, now: datetime) -> tuple[uuid.UUID, uuid.UUID] | None:
        """The user owning a live key and the key's id, or None."""
        digest = hash_token(key)

        async def load() -> tuple[uuid.UUID, uuid.UUID, float | None] | None:
            found = await self.repository.live_key(digest, now)
            if found is None:
                return None
            user_id, key_id, expires = found
            return user_id, key_id, None if expires is None else expires.timestamp()

        if self.cache is None:
            found = await load()
            return None if found is None else (found[0], found[1])
        return await self.cache.get(digest, None, load)
