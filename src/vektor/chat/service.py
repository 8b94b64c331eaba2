"""Stored conversations: listing, reading and deleting them (answers are written by
`vektor.answers`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from vektor.chat.models import Conversation
from vektor.chat.repository import ConversationRepository
from vektor.chat.schemas import ConversationRead, MessageRead
from vektor.core.events import EventBus


async def list_conversations(
    session: AsyncSession, *, user_id: uuid.UUID, limit: int, offset: int, query: str | None
) -> Sequence[Conversation]:
    """The user's conversations, newest first, optionally searched."""
    return await ConversationRepository(session).list_for_user(
        user_id, limit=limit, offset=offset, query=query
    )


async def read_conversation(
    session: AsyncSession, *, conversation: Conversation
) -> ConversationRead:
    """A conversation with its messages."""
    messages = await ConversationRepository(session).messages(conversation.id)
    return ConversationRead(
        id=conversation.id,
        title=conversation.title,
        model=conversation.model,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        messages=[MessageRead.model_validate(m) for m in messages],
    )


async def delete_conversation(
    session: AsyncSession, *, events: EventBus, conversation: Conversation
) -> None:
    """Delete a conversation and its messages."""
    await ConversationRepository(session).delete(conversation.id)
    await events.publish(conversation.user_id, "conversation.deleted", conversation.id)
