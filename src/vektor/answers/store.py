"""Store and publish: the question before an answer starts, the answer when it ends, and
the change-feed events and adapter notifications that follow."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from vektor.answers.prepare import make_title
from vektor.answers.request import Answer, AnswerRequest
from vektor.answers.tools import tool_message_content
from vektor.chat.hot_repository import ChatHotRepository, NewMessage
from vektor.chat.repository import ConversationRepository
from vektor.core.database import is_database_down, new_id, session_scope
from vektor.core.errors import NotFound
from vektor.core.events import EventBus
from vektor.llm.base import ChatMessage, Usage
from vektor.usage.hot_repository import UsageHotRepository, UsageRow

# How long a finished answer keeps trying to reach a database that is down.
STORE_RETRY_SECONDS = 15.0

Notify = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class StoredQuestion:
    """A question as stored: its conversation, the context so far, and how to undo it."""

    conversation_id: uuid.UUID
    context: list[ChatMessage]
    created: bool
    message_ids: list[uuid.UUID]


class AnswerStore:
    """Conversations as answers read and write them."""

    def __init__(
        self,
        writes: ChatHotRepository,
        sessionmaker: async_sessionmaker[AsyncSession],
        events: EventBus,
        notify: Notify | None = None,
    ) -> None:
        self.writes = writes
        self.usage_writes = UsageHotRepository(writes.database)
        self.sessionmaker = sessionmaker
        self.events = events
        self.notify = notify  # e.g. the adapters' notifier

    async def question(self, request: AnswerRequest) -> StoredQuestion:
        """One short transaction: the conversation (new, or the user's) and the new
        messages; 404 when the conversation is not the user's."""
        incoming = list(request.messages)
        rows = [NewMessage(id=new_id(), role=m.role, content=m.content) for m in incoming]
        common: dict[str, Any] = {"user_id": request.user_id, "model": request.model}
        common.update(messages=rows, at=datetime.now(UTC))
        history: list[ChatMessage] = []
        if request.conversation_id is None:
            conversation_id = new_id()
            title = make_title(incoming)
            await self.writes.start_conversation(
                conversation_id=conversation_id, title=title, **common
            )
            kind = "conversation.created"
        else:
            conversation_id = request.conversation_id
            earlier = await self.writes.continue_conversation(
                conversation_id=conversation_id, **common
            )
            if earlier is None:
                raise NotFound("Conversation not found")
            history = [
                ChatMessage(role=role, content=content)  # type: ignore[arg-type]
                for role, content in earlier
                if content and role != "tool"  # tool rounds live inside their answer
            ]
            kind = "conversation.updated"
        await self.events.publish(request.user_id, kind, conversation_id)
        created = request.conversation_id is None
        return StoredQuestion(conversation_id, history + incoming, created, [r.id for r in rows])

    async def undo(self, stored: StoredQuestion) -> None:
        """No answer could start: remove what the request stored, so a retry starts clean."""
        async for session in session_scope(self.sessionmaker):
            repository = ConversationRepository(session)
            if stored.created:
                await repository.delete(stored.conversation_id)
            else:
                await repository.delete_messages(stored.message_ids)
                await repository.recount(stored.conversation_id)

    async def usage(self, answer: Answer, row: UsageRow) -> None:
        """Write the usage row of an answer that stores no conversation, retried through an
        outage like an answer; committed when this returns."""

        async def write() -> bool:
            await self.usage_writes.record(row)
            return True

        await _write(answer.id, write)

    async def answer(self, answer: Answer, usage: Usage, row: UsageRow) -> bool:
        """Store the tool rounds and the answer with its usage row, in one transaction.
        False when it could not be stored (the database stayed down, or the conversation
        was deleted meanwhile: the usage row is written then all the same)."""
        assert answer.conversation_id is not None
        return await _write(answer.id, self._answer_write(answer, usage, row))

    async def announce(self, answer: Answer, usage: Usage) -> None:
        """Publish a stored answer's change and notify the adapters."""
        await self.events.publish(answer.user_id, "conversation.updated", answer.conversation_id)
        if self.notify is not None:
            self.notify("conversation.finished", _finished(answer, usage))

    def _answer_write(
        self, answer: Answer, usage: Usage, row: UsageRow
    ) -> Callable[[], Awaitable[bool]]:
        messages = [
            NewMessage(id=new_id(), role="tool", content=tool_message_content(record))
            for record in answer.tool_log
        ]
        messages.append(
            NewMessage(
                id=answer.id,
                role="assistant",
                content=answer.text,
                model=answer.model,
                finish_reason=answer.finish_reason,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
        )
        now = datetime.now(UTC)
        conversation_id = answer.conversation_id
        assert conversation_id is not None

        async def write() -> bool:
            return await self.writes.add_answer(
                conversation_id=conversation_id,
                user_id=answer.user_id,
                messages=messages,
                usage=row,
                at=now,
            )

        return write


async def _write(answer_id: uuid.UUID, write: Callable[[], Awaitable[bool]]) -> bool:
    """Run a write, retrying through an outage; False (logged) when it could not be done."""
    try:
        try:
            return await write()
        except (SQLAlchemyError, OSError) as exc:
            if not is_database_down(exc):
                raise
            return await _when_back(answer_id, write, exc)
    except (SQLAlchemyError, OSError) as exc:
        logger.error("could not store answer {}: {}", answer_id, exc)
        return False


async def _when_back(
    answer_id: uuid.UUID, write: Callable[[], Awaitable[bool]], first: BaseException
) -> bool:
    """A database restart should not cost the answer: retry an outage for a while."""
    logger.warning("storing answer {} failed, retrying: {}", answer_id, first)
    retrying = AsyncRetrying(
        retry=retry_if_exception(is_database_down),
        stop=stop_after_delay(STORE_RETRY_SECONDS),
        wait=wait_exponential(multiplier=0.1, max=2),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await write()
    return False  # pragma: no cover - the loop returns or raises


def _finished(answer: Answer, usage: Usage) -> dict[str, Any]:
    return {
        "conversation_id": str(answer.conversation_id),
        "message_id": str(answer.id),
        "user_id": str(answer.user_id),
        "model": answer.model,
        "finish_reason": answer.finish_reason,
        "completion_tokens": usage.completion_tokens,
    }
