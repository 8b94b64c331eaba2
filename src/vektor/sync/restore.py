"""Restore: check the whole file and the quota first, then write it a batch at a time.

Merge by id: the backup's conversations come back as they were, its preferences replace
the current ones, conversations made since are kept (`replace` removes them). Everything
lands on the caller's account: an id that belongs to someone else is moved to a new id
derived from the caller and the old id, so a second restore gives the same state.

Where the batches go is the target's choice (`RestoreTarget`): PostgreSQL writes them all
in one transaction, which other users never wait for; SQLite commits each batch on its
own, so the single writer's lock is never held for longer than one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vektor.sync.archive import ConversationRecord, OverQuota, Preferences, Profile, records
from vektor.sync.index import BackupIndex, MoveIds
from vektor.sync.repository import RestoreWriter
from vektor.users.repository import PreferenceRepository

# A batch stops at whichever comes first: records, messages, decompressed bytes. On SQLite
# each is one transaction: about half a second of the write lock (FTS upkeep included).
BATCH = 1000
BATCH_MESSAGES = 5000
BATCH_BYTES = 2 * 1024 * 1024


Turn = Callable[[], AbstractAsyncContextManager[Any]]


class RestoreConflict(ValueError):
    """The file's ids cannot be placed on this account."""


class RestoreTarget:
    """Sessions a restore writes through: one transaction for all, or one per batch."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        per_batch: bool,
        turn: Turn = contextlib.nullcontext,
    ) -> None:
        self.sessions = sessions
        self.per_batch = per_batch
        self.turn = turn  # held around each batch's transaction (`DirectDatabase.sqlite_turn`)
        self._whole: AsyncSession | None = None

    @contextlib.asynccontextmanager
    async def restore(self) -> AsyncIterator[RestoreTarget]:
        """The span of one restore: its transaction, unless batches commit on their own."""
        if self.per_batch:
            yield self
            return
        async with self.sessions() as session, session.begin():
            self._whole = session
            try:
                yield self
            finally:
                self._whole = None

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[RestoreWriter]:
        """A unit of writes: committed now (per batch) or with the restore."""
        if self._whole is not None:
            yield RestoreWriter(self._whole)
            return
        async with self.sessions() as session:
            # The engine's connection first, then the turn: the turn's holder never waits
            # for a connection that someone waiting for the turn could hold.
            await session.connection()
            async with self.turn():
                try:
                    yield RestoreWriter(session)
                except BaseException:
                    await session.rollback()
                    raise
                await session.commit()


def _take(source: Iterator[tuple[Any, int]]) -> list[Any]:
    batch, size, messages = [], 0, 0
    for record, length in source:
        batch.append(record)
        size += length
        messages += len(record.messages) if isinstance(record, ConversationRecord) else 0
        if len(batch) >= BATCH or messages >= BATCH_MESSAGES or size >= BATCH_BYTES:
            break
    return batch


async def check_quota(
    target: RestoreTarget, *, user_id: uuid.UUID, index: BackupIndex, incoming: int, limit: int
) -> None:
    """OverQuota unless the account, once the file is merged in, stays within `limit`."""
    moved = MoveIds(user_id)
    async with target.batch() as writer:
        total = await writer.storage_bytes(user_id)
    pages = index.conversations()
    while page := await asyncio.to_thread(next, pages, None):
        # Conversations the file brings back replace the stored ones with the same ids.
        async with target.batch() as writer:
            total -= await writer.storage_bytes(user_id, [*page, *map(moved, page)])
    if total + incoming > limit:
        raise OverQuota("the restored account would exceed your storage quota")


async def apply_backup(
    target: RestoreTarget, *, user_id: uuid.UUID, path: Path, mode: str, index: BackupIndex
) -> int:
    """Write a verified backup onto the user's account; returns conversations restored."""
    source = records(path)
    restored = 0
    while batch := await asyncio.to_thread(_take, source):
        async with target.batch() as writer:
            written = await _apply_batch(writer, user_id, batch)
        await asyncio.to_thread(index.mark_written, written)
        restored += len(written)
    if mode == "replace":
        await _remove_the_rest(target, user_id, index)
    return restored


async def _apply_batch(writer: RestoreWriter, user_id: uuid.UUID, batch: list[Any]) -> list[Any]:
    for record in batch:
        if isinstance(record, Preferences):
            await PreferenceRepository(writer.session).save(
                user_id, record.values.model_dump(mode="json")
            )
        elif isinstance(record, Profile):
            avatar = None if record.avatar_url is None else str(record.avatar_url)
            await writer.set_avatar(user_id, avatar)
    conversations = [r for r in batch if isinstance(r, ConversationRecord)]
    if not conversations:
        return []
    return await _apply_conversations(writer, user_id, conversations)


async def _remove_the_rest(target: RestoreTarget, user_id: uuid.UUID, index: BackupIndex) -> None:
    """`replace`: delete the user's conversations the restore did not write."""
    after: uuid.UUID | None = None
    while True:
        async with target.batch() as writer:
            page = await writer.conversation_ids_page(user_id, after, BATCH)
            if not page:
                return
            written = await asyncio.to_thread(index.written_among, page)
            await writer.delete_conversations(user_id, [c for c in page if c not in written])
        after = page[-1]


async def _apply_conversations(
    writer: RestoreWriter, user_id: uuid.UUID, batch: list[ConversationRecord]
) -> list[uuid.UUID]:
    moved = MoveIds(user_id)
    owners = await writer.owners([r.id for r in batch])
    ids = {r.id: r.id if owners.get(r.id, user_id) == user_id else moved(r.id) for r in batch}
    await writer.delete_conversations(user_id, list(ids.values()))
    if len(set(ids.values())) != len(ids) or await writer.owners(list(ids.values())):
        raise RestoreConflict("conversation ids collide with existing data")
    message_ids = [m.id for r in batch for m in r.messages]
    taken = await writer.existing_messages(message_ids) if message_ids else set()
    final = {i: moved(i) if i in taken else i for i in message_ids}
    remapped = [new for old, new in final.items() if old != new]
    if len(set(final.values())) != len(final) or (
        remapped and await writer.existing_messages(remapped)
    ):
        raise RestoreConflict("message ids collide with existing data")
    await writer.insert(*_rows(user_id, batch, ids, final))
    return list(ids.values())


def _rows(
    user_id: uuid.UUID,
    batch: list[ConversationRecord],
    ids: dict[uuid.UUID, uuid.UUID],
    final: dict[uuid.UUID, uuid.UUID],
) -> tuple[list[dict[str, Any]], Iterator[dict[str, Any]]]:
    """The conversations' rows, and their messages' rows made as they are inserted."""
    conversations = [
        {
            "id": ids[record.id],
            "user_id": user_id,
            "title": record.title,
            "model": record.model,
            "message_count": len(record.messages),
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }
        for record in batch
    ]
    messages = (
        {
            "id": final[m.id],
            "conversation_id": ids[record.id],
            "role": m.role,
            "content": m.content,
            "created_at": m.created_at,
            "model": m.model,
            "finish_reason": m.finish_reason,
            "prompt_tokens": m.prompt_tokens,
            "completion_tokens": m.completion_tokens,
        }
        for record in batch
        for m in record.messages
    )
    return conversations, messages
