"""Backup jobs: one consistent snapshot of a user's data, streamed to a checksummed file."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vektor import __version__
from vektor.core.database import create_engine, create_sessionmaker, session_scope
from vektor.sync.archive import FORMAT, FORMAT_VERSION, USAGE_PER_LINE, ArchiveWriter
from vektor.sync.lock import BEAT_EVERY_S, release, take_lock, touch_lock
from vektor.sync.models import Backup
from vektor.sync.repository import BackupRepository, SnapshotReader
from vektor.sync.restore import Turn

PAGE = 500
# Messages read at once: a page's conversations are read in parts of about this many
# messages (by their counters), so memory stays bounded whatever their length.
MESSAGES_PER_READ = 5000
STALE_AFTER = timedelta(seconds=60)


def _snapshot_engine(url: str) -> AsyncEngine:
    """A SQLite engine whose transactions really begin at BEGIN, reads included.

    The sqlite3 driver only opens a transaction before a write; a snapshot needs the reads
    in one transaction, so the driver's handling is switched off and BEGIN sent explicitly.
    """
    engine = create_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


@dataclass(frozen=True)
class JobBudget:
    """Where restores write: sessions outside the app's pool, `slots` of them at a time;
    on SQLite through the app's connection a batch at a time (`per_batch`). Each user's
    restored account may take `storage_limit` bytes."""

    sessions: async_sessionmaker[AsyncSession]
    slots: asyncio.Semaphore
    per_batch: bool
    storage_limit: int
    turn: Turn = contextlib.nullcontext  # held around each batch (restore.RestoreTarget)


def backup_path(backup_dir: Path, user_id: uuid.UUID, backup_id: uuid.UUID) -> Path:
    """Where a backup's file lives: one folder per user."""
    return Path(backup_dir) / str(user_id) / f"{backup_id}.vkb"


class BackupManager:
    """Starts backup jobs in the background and keeps track of them."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        backup_dir: Path,
        keep: int = 5,
        workers: int = 2,
        storage_limit: int = 1 << 30,
        turn: Turn = contextlib.nullcontext,
    ) -> None:
        self.engine = engine
        self.keep = keep
        self.sessionmaker = sessionmaker
        self.backup_dir = Path(backup_dir)
        # Snapshots read through an engine of their own, `workers` connections at most, so
        # however many jobs wait their turn, requests keep the app's pool (and on SQLite,
        # its one connection).
        url = engine.url.render_as_string(hide_password=False)
        if engine.dialect.name == "sqlite":
            # Restores write through the app's one connection, a short transaction per
            # batch: SQLite has one writer, and other users' answers take turns with them
            # (`turn`: the direct writes' thread waits in line during each batch).
            self.read_engine = _snapshot_engine(url)
            self.restores = JobBudget(
                sessionmaker,
                asyncio.Semaphore(workers),
                per_batch=True,
                storage_limit=storage_limit,
                turn=turn,
            )
            workers = 1
        else:
            # Room for `workers` snapshots and `workers` restores at once, never more.
            self.read_engine = create_engine(url, pool_size=2 * workers, max_overflow=0)
            self.restores = JobBudget(
                create_sessionmaker(self.read_engine),
                asyncio.Semaphore(workers),
                per_batch=False,
                storage_limit=storage_limit,
            )
        self.slots = asyncio.Semaphore(workers)
        self.tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.owners: dict[uuid.UUID, uuid.UUID] = {}

    async def start(self, user_id: uuid.UUID) -> Backup:
        """Record the job under the user's lock (409 if one is held), then run it."""
        backup = Backup(id=uuid.uuid4(), user_id=user_id)
        async for session in session_scope(self.sessionmaker):
            await take_lock(session, user_id=user_id, kind="backup", job_id=backup.id)
            await BackupRepository(session).add(backup)
        self.owners[backup.id] = user_id
        self.tasks[backup.id] = asyncio.create_task(self._run(backup.id, user_id))
        return backup

    async def fail_interrupted(self) -> None:
        """Jobs whose heartbeat stopped (a crashed or stopped process) are failed."""
        async for session in session_scope(self.sessionmaker):
            await BackupRepository(session).fail_stale(datetime.now(UTC) - STALE_AFTER)

    async def shutdown(self) -> None:
        """Stop running jobs; each marks itself failed and removes its partial file."""
        for task in self.tasks.values():
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.read_engine.dispose()

    async def _beat(self, backup_id: uuid.UUID, user_id: uuid.UUID) -> None:
        async for session in session_scope(self.sessionmaker):
            await BackupRepository(session).update(backup_id, heartbeat_at=datetime.now(UTC))
            await touch_lock(session, user_id=user_id, job_id=backup_id)

    async def _wait_turn(self, backup_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Wait for a free snapshot connection, showing meanwhile that the job is alive."""
        while True:
            try:
                async with asyncio.timeout(BEAT_EVERY_S):
                    await self.slots.acquire()
                    return
            except TimeoutError:
                await self._beat(backup_id, user_id)

    async def _finish(self, backup_id: uuid.UUID, user_id: uuid.UUID, **values: Any) -> None:
        """End the job and free the user's lock together; a completed one prunes old backups."""
        pruned: list[uuid.UUID] = []
        alive = True
        async for session in session_scope(self.sessionmaker):
            repository = BackupRepository(session)
            alive = await repository.update(backup_id, **values)
            await release(session, user_id=user_id, job_id=backup_id)
            if values["status"] == "completed":
                pruned = await repository.prune(user_id, self.keep)
        if not alive:
            # The account was deleted while the job ran, perhaps on another instance whose
            # clean-up came before this file (or this folder) was written: remove them here.
            folder = self.backup_dir / str(user_id)
            await asyncio.to_thread(shutil.rmtree, folder, True)
            logger.info("backup {} dropped: its account was deleted", backup_id)
            return
        for old in pruned:  # rows first: a file without its row is never listed
            await asyncio.to_thread(backup_path(self.backup_dir, user_id, old).unlink, True)

    async def cancel_user(self, user_id: uuid.UUID) -> None:
        """Stop the user's running jobs (the account is going away)."""
        tasks = [task for key, task in self.tasks.items() if self.owners.get(key) == user_id]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, backup_id: uuid.UUID, user_id: uuid.UUID) -> None:
        path = backup_path(self.backup_dir, user_id, backup_id)
        writer: ArchiveWriter | None = None
        try:
            await self._wait_turn(backup_id, user_id)
            try:
                writer = await asyncio.to_thread(ArchiveWriter, path)
                await self._snapshot(backup_id, user_id, writer)
            finally:
                self.slots.release()
            size, digest = await asyncio.to_thread(writer.finish)
            await self._finish(
                backup_id,
                user_id,
                status="completed",
                file_name=path.name,
                size_bytes=size,
                sha256=digest,
                conversations=writer.counts["conversations"],
                messages=writer.counts["messages"],
                completed_at=datetime.now(UTC),
            )
            logger.info("backup {} completed: {} bytes", backup_id, size)
        except asyncio.CancelledError:
            if writer is not None:
                await asyncio.to_thread(writer.abort)
            await asyncio.shield(
                self._finish(backup_id, user_id, status="failed", error="interrupted")
            )
            raise
        except Exception as exc:  # any failure ends the job as failed, with its reason
            logger.exception("backup {} failed", backup_id)
            try:
                if writer is not None:
                    await asyncio.to_thread(writer.abort)
            finally:
                await self._finish(backup_id, user_id, status="failed", error=type(exc).__name__)
        finally:
            self.tasks.pop(backup_id, None)
            self.owners.pop(backup_id, None)

    async def _snapshot(
        self, backup_id: uuid.UUID, user_id: uuid.UUID, writer: ArchiveWriter
    ) -> None:
        """Read everything in one transaction (repeatable read on PostgreSQL), page by page."""
        async with self.read_engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execution_options(isolation_level="REPEATABLE READ")
            async with connection.begin():
                reader = SnapshotReader(connection)
                profile = await reader.profile(user_id)
                if profile is None:
                    raise LookupError("the account no longer exists")
                header = {
                    "kind": "header",
                    "format": FORMAT,
                    "version": FORMAT_VERSION,
                    "app_version": __version__,
                    "created_at": datetime.now(UTC).isoformat(),
                }
                await asyncio.to_thread(
                    writer.write,
                    [
                        header,
                        {
                            "kind": "profile",
                            "email": profile.email,
                            "username": profile.username,
                            "avatar_url": profile.avatar_url,
                        },
                        {"kind": "preferences", "values": await reader.preferences(user_id)},
                    ],
                )
                after = 0
                while page := await reader.conversations(user_id, after, PAGE):
                    after = page[-1].seq
                    for part in _by_messages(page):
                        await asyncio.to_thread(writer.write, await self._records(reader, part))
                        await self._beat(backup_id, user_id)
                await self._usage(backup_id, user_id, reader, writer)

    async def _usage(
        self,
        backup_id: uuid.UUID,
        user_id: uuid.UUID,
        reader: SnapshotReader,
        writer: ArchiveWriter,
    ) -> None:
        """The user's usage rows, USAGE_PER_LINE to a line, in the same snapshot."""
        after: tuple[datetime, uuid.UUID] | None = None
        while rows := await reader.usage(user_id, after, USAGE_PER_LINE):
            after = (rows[-1].created_at, rows[-1].id)
            await asyncio.to_thread(writer.write, [{"kind": "usage", "rows": _usage(rows)}])
            await self._beat(backup_id, user_id)

    @staticmethod
    async def _records(reader: SnapshotReader, page: Any) -> list[dict[str, Any]]:
        grouped: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        for m in await reader.messages([c.id for c in page]):
            grouped[m.conversation_id].append(
                {
                    "id": str(m.id),
                    "role": m.role,
                    "content": m.content,
                    "created_at": _iso(m.created_at),
                    "model": m.model,
                    "finish_reason": m.finish_reason,
                    "prompt_tokens": m.prompt_tokens,
                    "completion_tokens": m.completion_tokens,
                }
            )
        return [
            {
                "kind": "conversation",
                "id": str(c.id),
                "title": c.title,
                "model": c.model,
                "created_at": _iso(c.created_at),
                "updated_at": _iso(c.updated_at),
                "messages": grouped.get(c.id, []),
            }
            for c in page
        ]


def _by_messages(page: Sequence[Any]) -> Iterator[list[Any]]:
    """Split a page of conversations into parts of at most MESSAGES_PER_READ messages."""
    part: list[Any] = []
    count = 0
    for conversation in page:
        if part and count + conversation.message_count > MESSAGES_PER_READ:
            yield part
            part, count = [], 0
        part.append(conversation)
        count += conversation.message_count
    if part:
        yield part


def _usage(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(r.id),
            "api_key_id": None if r.api_key_id is None else str(r.api_key_id),
            "model": r.model,
            "deployment": r.deployment,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "cost": format(r.cost, "f"),
            "cached": r.cached,
            "estimated": r.estimated,
            "source": r.source,
            "finish_reason": r.finish_reason,
            "created_at": _iso(r.created_at),
        }
        for r in rows
    ]


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()
