"""Queries of the sync domain."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    Row,
    and_,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from vektor.auth.models import Device, User, UserSession
from vektor.chat.repository import CONVERSATION, MESSAGE
from vektor.sync.archive import ROW_BYTES
from vektor.sync.models import Backup, SyncLock
from vektor.usage.models import Usage
from vektor.users.models import Preference

# Ids bound per IN list: asyncpg takes at most 32,767 parameters in a statement, SQLite 32,766.
IN_CHUNK = 5000
INSERT_SLICE = 2000


def _chunks(ids: Sequence[uuid.UUID]) -> list[Sequence[uuid.UUID]]:
    return [ids[start : start + IN_CHUNK] for start in range(0, len(ids), IN_CHUNK)]


def _octets(dialect: str) -> Callable[[ColumnElement[str]], ColumnElement[int]]:
    """UTF-8 length in bytes: PostgreSQL's octet_length; SQLite counts a BLOB's bytes."""
    if dialect == "postgresql":
        return lambda column: func.octet_length(column)
    return lambda column: func.length(cast(column, LargeBinary))


class DeviceSessionRepository:
    """A user's devices and active sessions."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active_sessions(self, user_id: uuid.UUID) -> Sequence[Row[UserSession, Device]]:
        """Unrevoked sessions with their devices, newest first."""
        result = await self.session.execute(
            select(UserSession, Device)
            .join(Device, Device.id == UserSession.device_pk)
            .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
            .order_by(UserSession.created_at.desc())
        )
        return result.all()

    async def devices(self, user_id: uuid.UUID) -> Sequence[Device]:
        """The user's devices, most recently seen first."""
        result = await self.session.execute(
            select(Device).where(Device.user_id == user_id).order_by(Device.last_seen_at.desc())
        )
        return result.scalars().all()

    async def delete_device(self, user_id: uuid.UUID, device_id: str) -> bool:
        """Delete a device; its sessions and refresh tokens go with it."""
        result = await self.session.execute(
            delete(Device).where(Device.user_id == user_id, Device.device_id == device_id)
        )
        return getattr(result, "rowcount", 0) == 1


class BackupRepository:
    """Backup jobs."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, backup: Backup) -> Backup:
        """Insert a job."""
        self.session.add(backup)
        await self.session.flush()
        return backup

    async def get_owned(self, backup_id: uuid.UUID, user_id: uuid.UUID) -> Backup | None:
        """A job of the user."""
        result = await self.session.execute(
            select(Backup).where(Backup.id == backup_id, Backup.user_id == user_id)
        )
        return result.scalar_one_or_none()

    async def list_for_user(self, user_id: uuid.UUID) -> Sequence[Backup]:
        """The user's jobs, newest first."""
        result = await self.session.execute(
            select(Backup).where(Backup.user_id == user_id).order_by(Backup.created_at.desc())
        )
        return result.scalars().all()

    async def latest_completed(self, user_id: uuid.UUID) -> Backup | None:
        """The newest completed backup."""
        result = await self.session.execute(
            select(Backup)
            .where(Backup.user_id == user_id, Backup.status == "completed")
            .order_by(Backup.created_at.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def update(self, backup_id: uuid.UUID, **values: Any) -> bool:
        """Change a job's fields; False when its row is gone (with its account)."""
        result = await self.session.execute(
            update(Backup).where(Backup.id == backup_id).values(**values)
        )
        return getattr(result, "rowcount", 0) == 1

    async def prune(self, user_id: uuid.UUID, keep: int) -> list[uuid.UUID]:
        """Delete all but the newest `keep` completed backups, and failed ones past them."""
        result = await self.session.execute(
            select(Backup.id, Backup.status)
            .where(Backup.user_id == user_id, Backup.status != "in_progress")
            .order_by(Backup.created_at.desc(), Backup.id)
        )
        rows = result.all()
        completed = [row.id for row in rows if row.status == "completed"]
        kept = set(completed[:keep]) | {row.id for row in rows[:keep]}
        gone = [row.id for row in rows if row.id not in kept]
        for chunk in _chunks(gone):
            await self.session.execute(delete(Backup).where(Backup.id.in_(chunk)))
        return gone

    async def fail_stale(self, before: datetime) -> None:
        """Jobs whose heartbeat stopped before `before` were interrupted."""
        await self.session.execute(
            update(Backup)
            .where(Backup.status == "in_progress", Backup.heartbeat_at < before)
            .values(status="failed", error="interrupted")
        )


class SyncLockRepository:
    """The per-user lock that lets one backup or restore run at a time."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def take(
        self, user_id: uuid.UUID, kind: str, job_id: uuid.UUID, stale_before: datetime
    ) -> None:
        """Clear a dead process's lock, then insert ours (IntegrityError if one is held)."""
        await self.session.execute(
            delete(SyncLock).where(
                SyncLock.user_id == user_id, SyncLock.heartbeat_at < stale_before
            )
        )
        await self.session.execute(
            insert(SyncLock).values(
                user_id=user_id, kind=kind, job_id=job_id, heartbeat_at=datetime.now(UTC)
            )
        )

    async def touch(self, user_id: uuid.UUID, job_id: uuid.UUID) -> None:
        """Move the heartbeat of our lock."""
        await self.session.execute(
            update(SyncLock)
            .where(SyncLock.user_id == user_id, SyncLock.job_id == job_id)
            .values(heartbeat_at=datetime.now(UTC))
        )

    async def release(self, user_id: uuid.UUID, job_id: uuid.UUID) -> None:
        """Drop our lock (never another job's)."""
        await self.session.execute(
            delete(SyncLock).where(SyncLock.user_id == user_id, SyncLock.job_id == job_id)
        )


class SnapshotReader:
    """Reads one user's data inside the caller's (consistent) transaction."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def profile(self, user_id: uuid.UUID) -> Row[str, str, str | None] | None:
        """Email, username and avatar."""
        result = await self.connection.execute(
            select(User.email, User.username, User.avatar_url).where(User.id == user_id)
        )
        return result.first()

    async def preferences(self, user_id: uuid.UUID) -> dict[str, Any]:
        """Stored preference values (empty if never set)."""
        result = await self.connection.execute(
            select(Preference.values).where(Preference.user_id == user_id)
        )
        values = result.scalar_one_or_none()
        return dict(values) if values else {}

    async def conversations(
        self, user_id: uuid.UUID, after_seq: int, limit: int
    ) -> Sequence[Row[Any]]:
        """A page of conversations in insertion order."""
        result = await self.connection.execute(
            select(CONVERSATION)
            .where(CONVERSATION.c.user_id == user_id, CONVERSATION.c.seq > after_seq)
            .order_by(CONVERSATION.c.seq)
            .limit(limit)
        )
        return result.all()

    async def messages(self, conversation_ids: list[uuid.UUID]) -> Sequence[Row[Any]]:
        """Messages of some conversations, in order."""
        rows: list[Row[Any]] = []
        for chunk in _chunks(conversation_ids):
            result = await self.connection.execute(
                select(MESSAGE).where(MESSAGE.c.conversation_id.in_(chunk)).order_by(MESSAGE.c.seq)
            )
            rows.extend(result.all())
        return rows

    async def usage(
        self, user_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[Any]:
        """A page of the user's usage rows by (created_at, id), after `after`; by the
        (user_id, created_at) index."""
        query = select(*USAGE_COLUMNS).where(Usage.user_id == user_id)
        if after is not None:
            at, key = after
            query = query.where(
                or_(Usage.created_at > at, and_(Usage.created_at == at, Usage.id > key))
            )
        result = await self.connection.execute(
            query.order_by(Usage.created_at, Usage.id).limit(limit)
        )
        return result.all()


USAGE_COLUMNS = (
    Usage.id,
    Usage.api_key_id,
    Usage.model,
    Usage.deployment,
    Usage.prompt_tokens,
    Usage.completion_tokens,
    Usage.cost,
    Usage.cached,
    Usage.estimated,
    Usage.source,
    Usage.finish_reason,
    Usage.created_at,
)


class RestoreWriter:
    """Writes restored conversations inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def owners(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """Conversation id → owner, for the ids that exist."""
        found: dict[uuid.UUID, uuid.UUID] = {}
        for chunk in _chunks(ids):
            result = await self.session.execute(
                select(CONVERSATION.c.id, CONVERSATION.c.user_id).where(
                    CONVERSATION.c.id.in_(chunk)
                )
            )
            found.update((row[0], row[1]) for row in result.all())
        return found

    async def existing_messages(self, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which message ids exist."""
        found: set[uuid.UUID] = set()
        for chunk in _chunks(ids):
            result = await self.session.execute(select(MESSAGE.c.id).where(MESSAGE.c.id.in_(chunk)))
            found.update(row[0] for row in result.all())
        return found

    async def delete_conversations(self, user_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
        """Delete some of the user's conversations."""
        for chunk in _chunks(ids):
            await self.session.execute(
                delete(CONVERSATION).where(
                    CONVERSATION.c.user_id == user_id, CONVERSATION.c.id.in_(chunk)
                )
            )

    async def insert(
        self, conversations: list[dict[str, Any]], messages: Iterable[dict[str, Any]]
    ) -> None:
        """Insert conversations, then their messages a slice at a time (memory stays
        bounded however many one conversation holds)."""
        if conversations:
            await self.session.execute(insert(CONVERSATION), conversations)
        rows = iter(messages)
        while part := list(itertools.islice(rows, INSERT_SLICE)):
            await self.session.execute(insert(MESSAGE), part)

    async def conversation_ids_page(
        self, user_id: uuid.UUID, after: uuid.UUID | None, limit: int
    ) -> list[uuid.UUID]:
        """The user's conversation ids in id order, after `after`."""
        query = select(CONVERSATION.c.id).where(CONVERSATION.c.user_id == user_id)
        if after is not None:
            query = query.where(CONVERSATION.c.id > after)
        result = await self.session.execute(query.order_by(CONVERSATION.c.id).limit(limit))
        return [row[0] for row in result.all()]

    async def storage_bytes(
        self, user_id: uuid.UUID, ids: Sequence[uuid.UUID] | None = None
    ) -> int:
        """What the user's conversations (all, or those among `ids`) take of the quota,
        measured as `archive.storage_bytes` measures a backup's."""
        total = 0
        for chunk in [None] if ids is None else _chunks(ids):
            total += await self._storage(user_id, chunk)
        return total

    async def _storage(self, user_id: uuid.UUID, ids: Sequence[uuid.UUID] | None) -> int:
        octets = _octets(self.session.get_bind().dialect.name)
        mine = CONVERSATION.c.user_id == user_id
        if ids is not None:
            mine = mine & CONVERSATION.c.id.in_(ids)
        rows = select(
            func.count() * ROW_BYTES + func.coalesce(func.sum(octets(CONVERSATION.c.title)), 0)
        ).where(mine)
        messages = (
            select(func.count() * ROW_BYTES + func.coalesce(func.sum(octets(MESSAGE.c.content)), 0))
            .select_from(MESSAGE.join(CONVERSATION, MESSAGE.c.conversation_id == CONVERSATION.c.id))
            .where(mine)
        )
        titles = (await self.session.execute(rows)).scalar_one()
        contents = (await self.session.execute(messages)).scalar_one()
        return int(titles) + int(contents)

    async def set_avatar(self, user_id: uuid.UUID, avatar_url: str | None) -> None:
        """Restore the avatar."""
        await self.session.execute(
            update(User).where(User.id == user_id).values(avatar_url=avatar_url)
        )
