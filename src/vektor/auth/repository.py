"""Queries of the auth domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.auth.models import Device, RefreshToken, User, UserSession


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

    async def search(self, *, query: str | None, limit: int, offset: int) -> Sequence[User]:
        """Users whose email or username holds `query` (any case), oldest first."""
        statement = select(User)
        if query:
            key = query.strip().lower()
            statement = statement.where(
                or_(
                    User.email.contains(key, autoescape=True),
                    User.username_key.contains(key, autoescape=True),
                )
            )
        statement = statement.order_by(User.created_at, User.id).limit(limit).offset(offset)
        return (await self.session.scalars(statement)).all()

    async def other_active_admins(self, user_id: uuid.UUID) -> int:
        """How many admins other than this user are not disabled; on PostgreSQL their rows
        stay locked until the transaction ends, so two admins cannot demote each other at
        once."""
        rows = await self.session.scalars(
            select(User.id)
            .where(User.is_admin.is_(True), User.disabled.is_(False), User.id != user_id)
            .with_for_update()
        )
        return len(rows.all())

    async def delete(self, user_id: uuid.UUID) -> None:
        """Delete a user; every owned row goes with it (ON DELETE CASCADE)."""
        await self.session.execute(delete(User).where(User.id == user_id))


class DeviceRepository:
    """A user's devices."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID, device_id: str) -> Device | None:
        """A device by the client's identifier."""
        result = await self.session.execute(
            select(Device).where(Device.user_id == user_id, Device.device_id == device_id)
        )
        return result.scalar_one_or_none()

    async def add(self, device: Device) -> Device:
        """Insert a device."""
        self.session.add(device)
        await self.session.flush()
        return device


class SessionRepository:
    """Login sessions."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, user_session: UserSession) -> UserSession:
        """Insert a session."""
        self.session.add(user_session)
        await self.session.flush()
        return user_session

    async def get_active(self, session_id: uuid.UUID) -> UserSession | None:
        """An unrevoked session."""
        result = await self.session.execute(
            select(UserSession).where(
                UserSession.id == session_id, UserSession.revoked_at.is_(None)
            )
        )
        return result.scalar_one_or_none()

    async def revoke(self, session_id: uuid.UUID, *, reason: str, at: datetime) -> None:
        """Revoke one session."""
        await self.session.execute(
            update(UserSession)
            .where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
            .values(revoked_at=at, revoked_reason=reason)
        )

    async def revoke_user_sessions(
        self, user_id: uuid.UUID, *, reason: str, at: datetime, keep: uuid.UUID | None = None
    ) -> None:
        """Revoke every session of a user but `keep`."""
        query = update(UserSession).where(
            UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
        )
        if keep is not None:
            query = query.where(UserSession.id != keep)
        await self.session.execute(query.values(revoked_at=at, revoked_reason=reason))

    async def last_seen(self, user_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, datetime]:
        """When each of these users was last active, over every session."""
        if not user_ids:
            return {}
        rows = await self.session.execute(
            select(UserSession.user_id, func.max(UserSession.last_seen_at))
            .where(UserSession.user_id.in_(user_ids))
            .group_by(UserSession.user_id)
        )
        return {user_id: seen for user_id, seen in rows.all() if seen is not None}


class RefreshTokenRepository:
    """Refresh tokens, by hash."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, token: RefreshToken) -> RefreshToken:
        """Insert a token."""
        self.session.add(token)
        await self.session.flush()
        return token

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        """A token by its hash."""
        result = await self.session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        )
        return result.scalar_one_or_none()

    async def mark_used(self, token_id: uuid.UUID, at: datetime) -> bool:
        """Mark a token used; False if it already was (another request won the race)."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
            .values(used_at=at)
        )
        assert isinstance(result, CursorResult)
        return result.rowcount == 1
