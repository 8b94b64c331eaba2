"""/chat/stream: answers as server-sent events, resumable and cancellable."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, status

from vektor.answers.cache_keys import no_cache_header
from vektor.answers.dependencies import ChatCaller, LastEventId, OwnedStream
from vektor.answers.request import AnswerRequest, Source
from vektor.answers.sse import sse_response
from vektor.auth.dependencies import AdminUser
from vektor.chat.schemas import ChatRequest
from vektor.core.errors import Conflict, Invalid
from vektor.core.openapi import sse_content
from vektor.core.streaming import EventStreamResponse
from vektor.llm.base import ChatMessage
from vektor.state import app_state

router = APIRouter(prefix="/chat", tags=["chat"])
admin_router = APIRouter(prefix="/admin", tags=["admin"])

SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: start, delta…, usage, done",
        "content": sse_content(),
    },
    404: {"description": "Unknown model, conversation or stream"},
    503: {"description": "No deployment of the model could start"},
}


def answer_request(
    body: ChatRequest,
    user_id: uuid.UUID,
    source: Source = "chat",
    api_key_id: uuid.UUID | None = None,
    *,
    no_cache: bool = False,
) -> AnswerRequest:
    """A chat request as the pipeline's: stored, with Vektor's tools unless turned off;
    `no_cache` (the Cache-Control header) bypasses the response cache."""
    if body.messages[-1].role != "user":
        raise Invalid("The last message must be the user's")
    return AnswerRequest(
        user_id=user_id,
        model=body.model,
        messages=[ChatMessage(role=m.role, content=m.content) for m in body.messages],
        source=source,
        api_key_id=api_key_id,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
        conversation_id=body.conversation_id,
        mcp_tools=body.tools,
        cache=False if no_cache else body.cache,
    )


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
    state = app_state(request)
    no_cache = no_cache_header(request.headers.get("cache-control"))
    asked = answer_request(body, user_id, no_cache=no_cache)
    answer, opened = await state.jobs.open(asked)
    await state.jobs.start(answer, opened)
    jobs, message_id = state.jobs, answer.id
    on_disconnect = (
        (lambda: jobs.cancel(message_id)) if state.settings.cancel_on_disconnect else None
    )
    return sse_response(
        state.event_log,
        message_id,
        after=0,
        ping_s=state.settings.sse_ping_seconds,
        on_disconnect=on_disconnect,
    )


@router.get(
    "/stream/{message_id}",
    operation_id="chat_stream_resume",
    response_class=EventStreamResponse,
    responses=SSE_DOC,
)
async def resume_stream(
    message_id: OwnedStream, after: LastEventId, request: Request
) -> EventStreamResponse:
    """Replay the events after Last-Event-ID, then follow the live answer."""
    state = app_state(request)
    return sse_response(
        state.event_log, message_id, after=after, ping_s=state.settings.sse_ping_seconds
    )


@router.post(
    "/stream/{message_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="chat_stream_cancel",
    responses={404: {"description": "No such stream"}, 409: {"description": "Already finished"}},
)
async def cancel_stream(message_id: OwnedStream, request: Request) -> dict[str, str]:
    """Stop a running answer now, on whichever instance runs it; the partial answer is
    stored as `cancelled`."""
    state = app_state(request)
    if not state.jobs.cancel(message_id) and not await state.event_log.cancel_elsewhere(message_id):
        raise Conflict("The answer has already finished")
    return {"detail": "Cancelling"}


@admin_router.delete(
    "/cache",
    operation_id="admin_cache_clear",
    responses={
        403: {"description": "Not an admin"},
        503: {"description": "The shared cache (Redis) cannot be reached"},
    },
)
async def clear_cache(request: Request, admin: AdminUser) -> dict[str, int]:
    """Admin: empty the response cache (with REDIS_URL, every instance's); how many
    answers it held."""
    return {"removed": await app_state(request).pipeline.cache.clear()}
