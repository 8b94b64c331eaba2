"""Rules of chatting: limits, context, storing the question, starting the answer; history."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vektor.chat.generation import Generation, GenerationManager
from vektor.chat.models import Conversation
from vektor.chat.repository import ConversationRepository
from vektor.chat.schemas import ChatRequest, ConversationRead, MessageRead
from vektor.chat.writes import ChatWrites, NewMessage
from vektor.core.config import Settings
from vektor.core.database import new_id, session_scope
from vektor.core.errors import Invalid, NotFound, RateLimited
from vektor.core.events import EventBus
from vektor.llm.balancer import ModelBalancer
from vektor.llm.base import ChatMessage, GenerationRequest

TITLE_LENGTH = 80
CHARS_PER_TOKEN = 3  # a cautious estimate, so trimmed context fits the model's window


def make_title(messages: Sequence[ChatMessage]) -> str:
    """A title from the first user message."""
    text = next((m.content for m in messages if m.role == "user"), "")
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return "New conversation"
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1].rstrip() + "…"


def fit_context(messages: list[ChatMessage], budget_chars: int) -> list[ChatMessage]:
    """Keep system messages and as many of the newest others as fit the budget."""
    system = [m for m in messages if m.role == "system"]
    used = sum(len(m.content) for m in system)
    kept: list[ChatMessage] = []
    for message in reversed([m for m in messages if m.role != "system"]):
        if kept and used + len(message.content) > budget_chars:
            break
        kept.append(message)
        used += len(message.content)
    return system + list(reversed(kept))


def check_limits(body: ChatRequest, settings: Settings) -> None:
    """Message count and size limits, and a question to answer."""
    if len(body.messages) > settings.max_messages_per_request:
        raise Invalid(f"At most {settings.max_messages_per_request} messages per request")
    for message in body.messages:
        if len(message.content) > settings.max_message_chars:
            raise Invalid(f"A message may have at most {settings.max_message_chars} characters")
    if body.messages[-1].role != "user":
        raise Invalid("The last message must be the user's")


async def start_chat(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    router: ModelBalancer,
    manager: GenerationManager,
    settings: Settings,
    user_id: uuid.UUID,
    body: ChatRequest,
) -> Generation:
    """Store the question, open a deployment, and start the answer as a background job."""
    check_limits(body, settings)
    if not router.has_model(body.model):
        raise NotFound(f"Unknown model '{body.model}'")
    if not manager.reserve(user_id, settings.max_concurrent_streams):
        raise RateLimited(1, "Too many open chat streams")
    started = False
    try:
        conversation_id, history, undo = await _store_question(manager.writes, user_id, body)
        kind = "conversation.created" if body.conversation_id is None else "conversation.updated"
        await manager.events.publish(user_id, kind, conversation_id)
        max_tokens = min(
            body.max_tokens or settings.max_answer_tokens,
            settings.max_answer_tokens,
            router.max_tokens(body.model) or settings.max_answer_tokens,
        )
        window = router.context_window(body.model)
        context = fit_context(history, max(1, (window - max_tokens)) * CHARS_PER_TOKEN)
        tools = manager.tools
        specs = tools.registry.tool_specs() if tools is not None and body.tools else []
        request = GenerationRequest(
            messages=context, temperature=body.temperature, max_tokens=max_tokens, tools=specs
        )
        try:
            opened = await router.open(body.model, request)
        except Exception:
            await _undo_question(sessionmaker, undo)
            raise
        generation = Generation(
            message_id=new_id(),
            user_id=user_id,
            conversation_id=conversation_id,
            model=body.model,
            request=request,
        )
        manager.start(generation, opened, sum(len(m.content) for m in context))
        started = True
        return generation
    finally:
        if not started:
            manager.release(user_id)


async def _store_question(
    writes: ChatWrites, user_id: uuid.UUID, body: ChatRequest
) -> tuple[uuid.UUID, list[ChatMessage], tuple[bool, uuid.UUID, list[uuid.UUID]]]:
    """One short transaction: the conversation (new or owned) and the new messages."""
    incoming = [ChatMessage(role=m.role, content=m.content) for m in body.messages]
    now = datetime.now(UTC)
    conversation_id = body.conversation_id or new_id()
    messages = [NewMessage(id=new_id(), role=m.role, content=m.content) for m in incoming]
    history: list[ChatMessage] = []
    if body.conversation_id is None:
        await writes.start_conversation(
            conversation_id=conversation_id,
            user_id=user_id,
            title=make_title(incoming),
            model=body.model,
            messages=messages,
            at=now,
        )
    else:
        earlier = await writes.continue_conversation(
            conversation_id=conversation_id,
            user_id=user_id,
            model=body.model,
            messages=messages,
            at=now,
        )
        if earlier is None:
            raise NotFound("Conversation not found")
        history = [
            ChatMessage(role=role, content=content)  # type: ignore[arg-type]
            for role, content in earlier
            if content and role != "tool"  # tool rounds live inside their answer
        ]
    undo = (body.conversation_id is None, conversation_id, [m.id for m in messages])
    return conversation_id, history + incoming, undo


async def _undo_question(
    sessionmaker: async_sessionmaker[AsyncSession],
    undo: tuple[bool, uuid.UUID, list[uuid.UUID]],
) -> None:
    """No answer could start: remove what this request stored, so a retry starts clean."""
    created, conversation_id, message_ids = undo
    async for session in session_scope(sessionmaker):
        repository = ConversationRepository(session)
        if created:
            await repository.delete(conversation_id)
        else:
            await repository.delete_messages(message_ids)
            await repository.recount(conversation_id)


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
