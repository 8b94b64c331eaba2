"""Restore: verify the whole file first, then apply it in one transaction.

Merge by id: the backup's conversations come back as they were, its preferences replace
the current ones, conversations made since are kept (`replace` removes them). Everything
lands on the caller's account: an id that belongs to someone else is mapped to a new id
derived from the caller and the old id, so a second restore gives the same state.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vektor.sync.archive import ConversationRecord, Preferences, Profile, records
from vektor.sync.repository import RestoreWriter
from vektor.users.repository import PreferenceRepository

BATCH = 1000
BATCH_BYTES = 8 * 1024 * 1024  # a batch also stops at this much decompressed data


class RestoreConflict(ValueError):
    """The file's ids cannot be placed on this account."""


_NAMESPACE = uuid.UUID("8a5b7f0e-4f6b-4c1e-9d2a-6f0f3c1d2b7a")


def _mapped(user_id: uuid.UUID, original: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{user_id}:{original}")


def _take(source: Iterator[tuple[Any, int]]) -> list[Any]:
    batch, size = [], 0
    for record, length in source:
        batch.append(record)
        size += length
        if len(batch) >= BATCH or size >= BATCH_BYTES:
            break
    return batch


async def _next_batch(source: Iterator[tuple[Any, int]]) -> list[Any]:
    return await asyncio.to_thread(_take, source)


async def apply_backup(session: AsyncSession, *, user_id: uuid.UUID, path: Path, mode: str) -> int:
    """Write a verified backup onto the user's account; returns conversations restored."""
    writer = RestoreWriter(session)
    source = records(path)
    kept: set[uuid.UUID] = set()
    while batch := await _next_batch(source):
        conversations = [r for r in batch if isinstance(r, ConversationRecord)]
        for record in batch:
            if isinstance(record, Preferences):
                await PreferenceRepository(session).save(
                    user_id, record.values.model_dump(mode="json")
                )
            elif isinstance(record, Profile):
                avatar = None if record.avatar_url is None else str(record.avatar_url)
                await writer.set_avatar(user_id, avatar)
        if conversations:
            kept.update(await _apply_conversations(writer, user_id, conversations))
    if mode == "replace":
        extra = list(await writer.conversation_ids(user_id) - kept)
        for start in range(0, len(extra), 1000):
            await writer.delete_conversations(user_id, extra[start : start + 1000])
    return len(kept)


async def _apply_conversations(
    writer: RestoreWriter, user_id: uuid.UUID, batch: list[ConversationRecord]
) -> list[uuid.UUID]:
    owners = await writer.owners([r.id for r in batch])
    ids = {
        r.id: r.id if owners.get(r.id, user_id) == user_id else _mapped(user_id, r.id)
        for r in batch
    }
    await writer.delete_conversations(user_id, list(ids.values()))
    if len(set(ids.values())) != len(ids) or await writer.owners(list(ids.values())):
        raise RestoreConflict("conversation ids collide with existing data")
    message_ids = [m.id for r in batch for m in r.messages]
    taken = await writer.existing_messages(message_ids) if message_ids else set()
    final = {i: _mapped(user_id, i) if i in taken else i for i in message_ids}
    remapped = [new for old, new in final.items() if old != new]
    if len(set(final.values())) != len(final) or (
        remapped and await writer.existing_messages(remapped)
    ):
        raise RestoreConflict("message ids collide with existing data")
    conversations: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for record in batch:
        cid = ids[record.id]
        conversations.append(
            {
                "id": cid,
                "user_id": user_id,
                "title": record.title,
                "model": record.model,
                "message_count": len(record.messages),
                "created_at": record.created_at,
                "updated_at": record.updated_at,
            }
        )
        messages.extend(
            {
                "id": final[m.id],
                "conversation_id": cid,
                "role": m.role,
                "content": m.content,
                "created_at": m.created_at,
                "model": m.model,
                "finish_reason": m.finish_reason,
                "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens,
            }
            for m in record.messages
        )
    await writer.insert(conversations, messages)
    return list(ids.values())
