"""/chat endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from vektor.auth.dependencies import CallerId
from vektor.chat import service
from vektor.chat.dependencies import (
    ChatCaller,
    GenerationsDep,
    LastEventId,
    OwnedConversation,
    OwnedStream,
    RouterDep,
    StreamsDep,
)
from vektor.chat.generation import GenerationManager
from vektor.chat.schemas import ChatRequest, ConversationRead, ConversationSummary, ModelRead
from vektor.chat.sse import sse_response
from vektor.core.config import Settings
from vektor.core.dependencies import EventsDep, SessionDep, SettingsDep
from vektor.core.errors import Conflict
from vektor.core.openapi import sse_content
from vektor.core.streaming import EventStreamResponse

router = APIRouter(prefix="/chat", tags=["chat"])

SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: start, delta…, usage, done",
        "content": sse_content(),
    },
    404: {"description": "Unknown model, conversation or stream"},
    503: {"description": "No deployment of the model could start"},
}


@router.post(
    "/stream",
    operation_id="chat_stream",
    response_class=EventStreamResponse,
    responses=SSE_DOC,
)
async def chat_stream(
    body: ChatRequest, request: Request, user_id: ChatCaller
) -> EventStreamResponse:
    """Answer as server-sent events; the answer is stored even if the client goes away.

    The app's machinery is read from its state, not taken as dependencies: this is the
    busiest route, and FastAPI walks the whole dependency tree on every request."""
    state = request.app.state
    settings: Settings = state.settings
    generations: GenerationManager = state.generations
    generation = await service.start_chat(
        sessionmaker=state.sessionmaker,
        router=state.model_router,
        manager=generations,
        settings=settings,
        user_id=user_id,
        body=body,
    )
    on_disconnect = (
        (lambda: generations.cancel(generation.message_id))
        if settings.cancel_on_disconnect
        else None
    )
    return sse_response(
        state.streams,
        generation.message_id,
        after=0,
        ping_s=settings.sse_ping_seconds,
        on_disconnect=on_disconnect,
    )


@router.get(
    "/stream/{message_id}",
    operation_id="chat_stream_resume",
    response_class=EventStreamResponse,
    responses=SSE_DOC,
)
async def resume_stream(
    message_id: OwnedStream, after: LastEventId, streams: StreamsDep, settings: SettingsDep
) -> EventStreamResponse:
    """Replay the events after Last-Event-ID, then follow the live answer."""
    return sse_response(streams, message_id, after=after, ping_s=settings.sse_ping_seconds)


@router.post(
    "/stream/{message_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="chat_stream_cancel",
    responses={404: {"description": "No such stream"}, 409: {"description": "Already finished"}},
)
async def cancel_stream(
    message_id: OwnedStream, generations: GenerationsDep, streams: StreamsDep
) -> dict[str, str]:
    """Stop a running answer now, on whichever instance runs it; the partial answer is
    stored as `cancelled`."""
    if not generations.cancel(message_id) and not await streams.cancel_elsewhere(message_id):
        raise Conflict("The answer has already finished")
    return {"detail": "Cancelling"}


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
