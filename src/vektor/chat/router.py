"""/chat endpoints of stored conversations and models (answers: `vektor.answers.router`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from vektor.auth.dependencies import CallerId
from vektor.chat import service
from vektor.chat.dependencies import OwnedConversation, RouterDep
from vektor.chat.schemas import ConversationRead, ConversationSummary, ModelRead
from vektor.core.dependencies import EventsDep, SessionDep

router = APIRouter(prefix="/chat", tags=["chat"])


@router.get("/history", response_model=list[ConversationSummary], operation_id="chat_history")
async def history(
    user_id: CallerId,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> list[ConversationSummary]:
    """The caller's conversations, newest first; `q` searches titles and messages."""
    rows = await service.list_conversations(
        session, user_id=user_id, limit=limit, offset=offset, query=q
    )
    return [ConversationSummary.model_validate(row) for row in rows]


@router.get(
    "/history/{conversation_id}",
    response_model=ConversationRead,
    operation_id="chat_conversation",
    responses={404: {"description": "No such conversation"}},
)
async def conversation(conversation: OwnedConversation, session: SessionDep) -> ConversationRead:
    """One conversation with its messages."""
    return await service.read_conversation(session, conversation=conversation)


@router.delete(
    "/history/{conversation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="chat_delete_conversation",
    responses={404: {"description": "No such conversation"}},
)
async def delete_conversation(
    conversation: OwnedConversation, session: SessionDep, events: EventsDep
) -> Response:
    """Delete a conversation and its messages."""
    await service.delete_conversation(session, events=events, conversation=conversation)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/models", response_model=list[ModelRead], operation_id="chat_models")
async def models(_user_id: CallerId, model_router: RouterDep) -> list[ModelRead]:
    """One row per public model, whatever its number of deployments."""
    return [ModelRead(**row) for row in model_router.models()]
