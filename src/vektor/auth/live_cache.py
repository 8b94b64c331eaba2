"""The session check with its answers remembered (`core/credential_cache.py`): a token
whose session was live a moment ago is not looked up again until the entry is stale (a
revocation since), expired (the token's own expiry, or TOUCH_INTERVAL, so activity is
still recorded) or evicted."""

from __future__ import annotations

import uuid
from datetime import datetime

from vektor.auth.hot_repository import SessionHotRepository
from vektor.core.credential_cache import CredentialCache


class LiveSessions:
    """`SessionHotRepository.live`, through the cache when there is one."""

    def __init__(
        self,
        repository: SessionHotRepository,
        cache: CredentialCache[uuid.UUID, None] | None,
    ) -> None:
        self.repository, self.cache = repository, cache

    async def live(
        self,
        session_id: uuid.UUID,
        user_id: uuid.UUID,
        now: datetime,
        expires_at: datetime | None = None,
    ) -> bool:
        """Whether the session is the user's and not revoked (and the user still exists);
        `expires_at` (the token's) bounds how long the answer is remembered."""
        if self.cache is None:
            return await self.repository.live(session_id, user_id, now)

        async def load() -> tuple[uuid.UUID, None, float | None] | None:
            if not await self.repository.live(session_id, user_id, now):
                return None
            return user_id, None, None if expires_at is None else expires_at.timestamp()

        return await self.cache.get(session_id, user_id, load) is not None
