"""Queries of the chat domain, full-text search included."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    column,
    delete,
    func,
    or_,
    select,
    text,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.chat.models import Conversation, Message

MAX_SEARCH_TERMS = 8
# Plain tables, for Core statements over many rows (backups, sync).
CONVERSATION = cast(Table, Conversation.__table__)
MESSAGE = cast(Table, Message.__table__)


def search_terms(query: str) -> list[str]:
    """Words of a search, as plain tokens (no operator of either engine survives)."""
    return re.findall(r"\w+", query)[:MAX_SEARCH_TERMS]


class ConversationRepository:
    """Conversations and their messages."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_owned(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID
    ) -> Conversation | None:
        """A conversation, only if it belongs to the user."""
        result = await self.session.execute(
            select(Conversation).where(
                Conversation.id == conversation_id, Conversation.user_id == user_id
            )
        )
        return result.scalar_one_or_none()

    async def add(self, conversation: Conversation) -> Conversation:
        """Insert a conversation."""
        self.session.add(conversation)
        await self.session.flush()
        return conversation

    async def messages(self, conversation_id: uuid.UUID) -> Sequence[Message]:
        """The conversation's messages in order."""
        result = await self.session.execute(
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.seq)
        )
        return result.scalars().all()

    async def delete(self, conversation_id: uuid.UUID) -> None:
        """Delete a conversation and its messages."""
        await self.session.execute(delete(Conversation).where(Conversation.id == conversation_id))

    async def delete_messages(self, message_ids: list[uuid.UUID]) -> None:
        """Delete some messages (used to undo a request that could not start)."""
        await self.session.execute(delete(Message).where(Message.id.in_(message_ids)))

    async def recount(self, conversation_id: uuid.UUID) -> None:
        """Set message_count from the rows."""
        count = (
            select(func.count())
            .select_from(Message)
            .where(Message.conversation_id == conversation_id)
            .scalar_subquery()
        )
        await self.session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(message_count=count)
        )

    async def list_for_user(
        self, user_id: uuid.UUID, *, limit: int, offset: int, query: str | None
    ) -> Sequence[Conversation]:
        """Newest first; `query` matches titles and message text through the search index."""
        statement = select(Conversation).where(Conversation.user_id == user_id)
        if query is not None:
            terms = search_terms(query)
            if not terms:
                return []
            statement = statement.where(self._matches(terms))
        statement = statement.order_by(Conversation.updated_at.desc(), Conversation.seq.desc())
        result = await self.session.execute(statement.limit(limit).offset(offset))
        return result.scalars().all()

    def _matches(self, terms: list[str]) -> ColumnElement[bool]:
        if self.session.get_bind().dialect.name == "sqlite":
            match = " ".join(f'"{term}"*' for term in terms)
            in_titles = Conversation.seq.in_(
                text("SELECT rowid FROM conversation_fts WHERE conversation_fts MATCH :q")
                .bindparams(q=match)
                .columns(column("rowid", Integer))
            )
            in_messages = Conversation.id.in_(
                select(Message.conversation_id).where(
                    Message.seq.in_(
                        text("SELECT rowid FROM message_fts WHERE message_fts MATCH :q")
                        .bindparams(q=match)
                        .columns(column("rowid", Integer))
                    )
                )
            )
            return or_(in_titles, in_messages)
        # Both searches through their GIN indexes, joined as one set of ids: an OR of the
        # title match and the message subquery would make the planner walk the user's
        # conversations newest first, evaluating the title match row by row.
        tsquery = func.to_tsquery("simple", " & ".join(f"{term}:*" for term in terms))
        by_title = select(Conversation.id).where(
            func.to_tsvector("simple", Conversation.title).op("@@")(tsquery)
        )
        by_message = select(Message.conversation_id).where(
            func.to_tsvector("simple", Message.content).op("@@")(tsquery)
        )
        return Conversation.id.in_(union(by_title, by_message))
