"""The session check with its answers remembered (`core/credential_cache.py`): a token
whose session was live a moment ago is not looked up again until the entry is stale (a
revocation since), expired (the token's own expiry, or TOUCH_INTERVAL, so activity is
still recorded) or evicted. The user's MCP pools are remembered the same way."""

from __future__ import annotations

import uuid
from datetime import datetime

from vektor.auth.hot_repository import McpPoolsHotRepository, SessionHotRepository
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


class LivePools:
    """`McpPoolsHotRepository.allowed`, through the cache when there is one. An admin's
    change of a user's pools counts as a revocation (`credentials_revoked`, once
    committed), so every instance reads the pools again on the user's next request."""

    def __init__(
        self,
        repository: McpPoolsHotRepository,
        cache: CredentialCache[uuid.UUID, frozenset[str] | None] | None,
    ) -> None:
        self.repository, self.cache = repository, cache

    async def allowed(self, user_id: uuid.UUID) -> frozenset[str] | None:
        """The pools the user may use; None when every pool is allowed."""
        if self.cache is None:
            return await self.repository.allowed(user_id)

        async def load() -> tuple[uuid.UUID, frozenset[str] | None, float | None]:
            return user_id, await self.repository.allowed(user_id), None

        found = await self.cache.get(user_id, user_id, load)
        return None if found is None else found[1]
