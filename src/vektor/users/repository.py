"""Queries of the users domain."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.users.models import Preference, User


class UserRepository:
    """Users by id, email or username."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        """A user by id."""
        return await self.session.get(User, user_id)

    async def get_by_login(self, identifier: str) -> User | None:
        """A user by email or username, both compared case-insensitively."""
        key = identifier.strip().lower()
        result = await self.session.execute(
            select(User).where(or_(User.email == key, User.username_key == key)).limit(1)
        )
        return result.scalar_one_or_none()

    async def taken(
        self, *, email: str | None, username_key: str | None, exclude: uuid.UUID | None = None
    ) -> bool:
        """Whether another user has this email or username."""
        clauses = []
        if email is not None:
            clauses.append(User.email == email)
        if username_key is not None:
            clauses.append(User.username_key == username_key)
        if not clauses:
            return False
        query = select(User.id).where(or_(*clauses))
        if exclude is not None:
            query = query.where(User.id != exclude)
        result = await self.session.execute(query.limit(1))
        return result.first() is not None

    async def add(self, user: User) -> User:
        """Insert a user."""
        self.session.add(user)
        await self.session.flush()
        return user

    async def delete(self, user_id: uuid.UUID) -> None:
        """Delete a user; every owned row goes with it (ON DELETE CASCADE)."""
        await self.session.execute(delete(User).where(User.id == user_id))


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
