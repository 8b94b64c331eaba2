"""Queries of the users domain."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vektor.users.models import Preference


class PreferenceRepository:
    """A user's stored preferences."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> Preference | None:
        """The row, if the user ever set a preference."""
        return await self.session.get(Preference, user_id)

    async def save(self, user_id: uuid.UUID, values: dict[str, Any]) -> Preference:
        """Create or replace the row."""
        row = await self.get(user_id)
        if row is None:
            row = Preference(user_id=user_id, values=values)
            self.session.add(row)
        else:
            row.values = values
        await self.session.flush()
        return row
