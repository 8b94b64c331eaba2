"""Queries of the auth domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.auth.models import Device, RefreshToken, UserSession


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
