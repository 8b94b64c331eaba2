"""Queries of the apikeys domain (the ORM); the per-request key check is in
`hot_repository.py`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.apikeys.models import ApiKey


class ApiKeyRepository:
    """A user's API keys."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_for_user(self, user_id: uuid.UUID) -> Sequence[ApiKey]:
        """The user's keys, newest first."""
        rows = await self.session.scalars(
            select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at.desc())
        )
        return rows.all()

    async def add(self, key: ApiKey) -> ApiKey:
        """Insert a key."""
        self.session.add(key)
        await self.session.flush()
        return key

    async def delete_owned(self, user_id: uuid.UUID, key_id: uuid.UUID) -> bool:
        """Delete the user's key; False when the user has no such key."""
        result = await self.session.execute(
            delete(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
        )
        return getattr(result, "rowcount", 0) == 1
