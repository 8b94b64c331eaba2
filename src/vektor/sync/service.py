"""Rules of devices, sessions, backups and restores."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vektor.core.database import session_scope
from vektor.core.errors import Invalid, NotFound
from vektor.core.events import RESYNC, EventBus
from vektor.sync.archive import BackupInvalid, verify
from vektor.sync.backups import JobBudget, backup_path
from vektor.sync.index import BackupIndex, MoveIds
from vektor.sync.lock import user_job
from vektor.sync.models import Backup
from vektor.sync.repository import BackupRepository, DeviceSessionRepository
from vektor.sync.restore import RestoreConflict, RestoreTarget, apply_backup, check_quota
from vektor.sync.schemas import BackupRead, DeviceRead, SessionRead


async def list_sessions(
    session: AsyncSession, *, user_id: uuid.UUID, current: uuid.UUID
) -> list[SessionRead]:
    """The user's active sessions; `current` marks the caller's own."""
    rows = await DeviceSessionRepository(session).active_sessions(user_id)
    return [
        SessionRead(
            id=s.id,
            device_id=d.device_id,
            device_name=d.name,
            last_sync=s.last_seen_at,
            created_at=s.created_at,
            current=s.id == current,
        )
        for s, d in rows
    ]


async def list_devices(session: AsyncSession, *, user_id: uuid.UUID) -> list[DeviceRead]:
    """The user's devices."""
    devices = await DeviceSessionRepository(session).devices(user_id)
    return [DeviceRead(id=d.device_id, name=d.name, last_seen=d.last_seen_at) for d in devices]


async def remove_device(
    session: AsyncSession, *, events: EventBus, user_id: uuid.UUID, device_id: str
) -> None:
    """Forget a device: its sessions, access and refresh tokens stop working."""
    if not await DeviceSessionRepository(session).delete_device(user_id, device_id):
        raise NotFound("Device not found")
    await events.publish(user_id, "device.removed", device_id)


def backup_read(backup: Backup) -> BackupRead:
    """The API view of a job."""
    return BackupRead(
        task_id=backup.id,
        status=backup.status,
        created_at=backup.created_at,
        completed_at=backup.completed_at,
        size_bytes=backup.size_bytes,
        sha256=backup.sha256,
        conversations=backup.conversations,
        messages=backup.messages,
        error=backup.error,
    )


async def list_backups(session: AsyncSession, *, user_id: uuid.UUID) -> Sequence[Backup]:
    """The user's backups, newest first."""
    return await BackupRepository(session).list_for_user(user_id)


async def owned_backup(
    session: AsyncSession, *, user_id: uuid.UUID, backup_id: uuid.UUID
) -> Backup:
    """A backup of the user, or 404."""
    backup = await BackupRepository(session).get_owned(backup_id, user_id)
    if backup is None:
        raise NotFound("Backup not found")
    return backup


def completed_file(backup: Backup, backup_dir: Path) -> Path:
    """The file of a completed backup, or 404."""
    path = backup_path(backup_dir, backup.user_id, backup.id)
    if backup.status != "completed" or not path.exists():
        raise NotFound("Backup file not available")
    return path


async def restore(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    budget: JobBudget,
    events: EventBus,
    backup_dir: Path,
    user_id: uuid.UUID,
    backup_id: uuid.UUID | None,
    mode: str,
) -> int:
    """Restore a stored backup (the latest completed one by default)."""
    backup: Backup | None = None
    async for session in session_scope(sessionmaker):
        if backup_id is None:
            backup = await BackupRepository(session).latest_completed(user_id)
        else:
            backup = await owned_backup(session, user_id=user_id, backup_id=backup_id)
    if backup is None:
        raise NotFound("No completed backup to restore")
    path = completed_file(backup, backup_dir)
    async with user_job(sessionmaker, user_id=user_id, kind="restore"):
        return await _apply_file(
            budget=budget,
            events=events,
            user_id=user_id,
            path=path,
            mode=mode,
            expected_sha256=backup.sha256,
        )


async def restore_file(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    budget: JobBudget,
    events: EventBus,
    user_id: uuid.UUID,
    path: Path,
    mode: str,
) -> int:
    """Restore an uploaded file, unless a backup or restore of the user is running (409)."""
    async with user_job(sessionmaker, user_id=user_id, kind="restore"):
        return await _apply_file(
            budget=budget, events=events, user_id=user_id, path=path, mode=mode
        )


async def _apply_file(
    *,
    budget: JobBudget,
    events: EventBus,
    user_id: uuid.UUID,
    path: Path,
    mode: str,
    expected_sha256: str | None = None,
) -> int:
    """Check the file and the quota, then apply; nothing changes if a check fails."""
    index = await asyncio.to_thread(BackupIndex)
    try:
        async with budget.slots:
            restored = await _checked_restore(budget, index, user_id, path, mode, expected_sha256)
    except (BackupInvalid, RestoreConflict) as exc:
        raise Invalid(f"Backup rejected: {exc}") from exc
    except (IntegrityError, DataError, OverflowError) as exc:
        # The transaction was rolled back: nothing changed.
        raise Invalid("Backup rejected: its data does not fit this account") from exc
    finally:
        await asyncio.to_thread(index.close)
    await events.publish(user_id, RESYNC)
    return restored


async def _checked_restore(
    budget: JobBudget,
    index: BackupIndex,
    user_id: uuid.UUID,
    path: Path,
    mode: str,
    expected_sha256: str | None,
) -> int:
    limit = budget.storage_limit
    incoming = await asyncio.to_thread(
        verify,
        path,
        index=index,
        moved=MoveIds(user_id),
        limit=limit,
        expected_sha256=expected_sha256,
    )
    target = RestoreTarget(budget.sessions, per_batch=budget.per_batch, turn=budget.turn)
    async with target.restore():
        if mode == "merge":
            await check_quota(target, user_id=user_id, index=index, incoming=incoming, limit=limit)
        return await apply_backup(target, user_id=user_id, path=path, mode=mode, index=index)


async def delete_backup_files(backup_dir: Path, user_id: uuid.UUID) -> None:
    """Remove every backup file of a user (the account is being deleted)."""
    await asyncio.to_thread(shutil.rmtree, Path(backup_dir) / str(user_id), True)
