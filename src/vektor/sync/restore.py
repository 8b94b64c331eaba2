"""Restore: verify the whole file first, then apply it in one transaction.

Merge by id: the backup's conversations come back as they were, its preferences replace
the current ones, conversations made since are kept (`replace` removes them). Everything
lands on the caller's account: an id that belongs to someone else is mapped to a new id
derived from the caller and the old id, so a second restore gives the same state.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vektor.sync.archive import ConversationRecord, Preferences, Profile, records
from vektor.sync.repository import RestoreWriter
from vektor.users.repository import PreferenceRepository

BATCH = 1000
_NAMESPACE = uuid.UUID("8a5b7f0e-4f6b-4c1e-9d2a-6f0f3c1d2b7a")


def _mapped(user_id: uuid.UUID, original: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{user_id}:{original}")


async def _next_batch(source: Iterator[Any]) -> list[Any]:
    return await asyncio.to_thread(lambda: list(itertools.islice(source, BATCH)))


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
                await writer.set_avatar(user_id, record.avatar_url)
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
    message_ids = [m.id for r in batch for m in r.messages]
    taken = await writer.existing_messages(message_ids) if message_ids else set()
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
                "id": _mapped(user_id, m.id) if m.id in taken else m.id,
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
