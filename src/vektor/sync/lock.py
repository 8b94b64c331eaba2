"""One backup or restore per user at a time, on every instance: a row in `sync_lock`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from loguru import logger
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vektor.core.database import DATABASE_DOWN_ERRORS, session_scope
from vektor.core.errors import Conflict
from vektor.sync.repository import SyncLockRepository

# A lock whose heartbeat is older than this belongs to a process that died.
STALE_AFTER = timedelta(seconds=60)
BEAT_EVERY_S = 15.0


class SyncBusy(Conflict):
    """The user already has a backup or restore running."""

    default_detail = "A backup or restore of this account is already running"


async def take_lock(
    session: AsyncSession, *, user_id: uuid.UUID, kind: str, job_id: uuid.UUID
) -> None:
    """Take the user's lock inside the caller's transaction, or raise SyncBusy."""
    try:
        await SyncLockRepository(session).take(
            user_id, kind, job_id, datetime.now(UTC) - STALE_AFTER
        )
    except IntegrityError as exc:
        raise SyncBusy() from exc


async def touch_lock(session: AsyncSession, *, user_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """Show the job is alive."""
    await SyncLockRepository(session).touch(user_id, job_id)


async def release(session: AsyncSession, *, user_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """Free the user's lock inside the caller's transaction (only if it is ours)."""
    await SyncLockRepository(session).release(user_id, job_id)


async def release_lock(
    sessionmaker: async_sessionmaker[AsyncSession], *, user_id: uuid.UUID, job_id: uuid.UUID
) -> None:
    """Let the user start another job; a failure here is cleared when the lock goes stale."""
    try:
        async for session in session_scope(sessionmaker):
            await SyncLockRepository(session).release(user_id, job_id)
    except DATABASE_DOWN_ERRORS:
        logger.warning("sync lock of user {} not released; it expires", user_id)


async def _beat(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: uuid.UUID, job_id: uuid.UUID
) -> None:
    while True:
        await asyncio.sleep(BEAT_EVERY_S)
        try:
            async with asyncio.timeout(5):
                async for session in session_scope(sessionmaker):
                    await touch_lock(session, user_id=user_id, job_id=job_id)
        except DATABASE_DOWN_ERRORS:  # TimeoutError among them
            logger.debug("sync lock heartbeat of user {} missed", user_id)


@contextlib.asynccontextmanager
async def user_job(
    sessionmaker: async_sessionmaker[AsyncSession], *, user_id: uuid.UUID, kind: str
) -> AsyncIterator[uuid.UUID]:
    """Hold the user's lock (with a heartbeat) for the length of the block."""
    job_id = uuid.uuid4()
    async for session in session_scope(sessionmaker):
        await take_lock(session, user_id=user_id, kind=kind, job_id=job_id)
    beat = asyncio.create_task(_beat(sessionmaker, user_id, job_id))
    try:
        yield job_id
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)
        await asyncio.shield(release_lock(sessionmaker, user_id=user_id, job_id=job_id))
