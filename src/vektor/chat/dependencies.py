"""Chat dependencies: the app's chat machinery, and conversations loaded with ownership."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials

from vektor.auth.dependencies import BEARER, CallerId, get_caller_id
from vektor.chat.generation import GenerationManager
from vektor.chat.models import Conversation
from vektor.chat.repository import ConversationRepository
from vektor.chat.streams import StreamStore
from vektor.core.config import Settings
from vektor.core.dependencies import SessionDep
from vektor.core.errors import BadRequest, NotFound
from vektor.core.ratelimit import RateLimiter
from vektor.llm.balancer import ModelBalancer


async def get_router(request: Request) -> ModelBalancer:
    """The app's model router."""
    router: ModelBalancer = request.app.state.model_router
    return router


async def get_generations(request: Request) -> GenerationManager:
    """The app's generation manager."""
    manager: GenerationManager = request.app.state.generations
    return manager


async def get_streams(request: Request) -> StreamStore:
    """The app's stream store."""
    streams: StreamStore = request.app.state.streams
    return streams


async def valid_owned_conversation(
    conversation_id: uuid.UUID, user_id: CallerId, session: SessionDep
) -> Conversation:
    """The conversation, or 404 when it does not exist or is someone else's."""
    conversation = await ConversationRepository(session).get_owned(conversation_id, user_id)
    if conversation is None:
        raise NotFound("Conversation not found")
    return conversation


async def valid_owned_stream(
    message_id: uuid.UUID, user_id: CallerId, streams: Annotated[StreamStore, Depends(get_streams)]
) -> uuid.UUID:
    """A stream of the caller's, or 404 (unknown, expired or someone else's)."""
    if await streams.owner(message_id) != user_id:
        raise NotFound("Stream not found")
    return message_id


async def last_event_id(last_event_id: Annotated[str | None, Header()] = None) -> int:
    """The Last-Event-ID header as an event number (0 when absent)."""
    if last_event_id is None or last_event_id.strip() == "":
        return 0
    try:
        value = int(last_event_id)
    except ValueError:
        raise BadRequest("Last-Event-ID must be an event number") from None
    if value < 0:
        raise BadRequest("Last-Event-ID must be an event number")
    return value


async def get_chat_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> uuid.UUID:
    """The caller of a chat request, counted against their chat budget.

    `get_caller_id` and the budget in one dependency, which reads the limiter and the
    settings from the app: FastAPI walks a route's whole dependency tree on every request,
    and a tree of a dozen nodes cost more than everything the route itself does before the
    upstream is asked."""
    user_id = await get_caller_id(request, credentials)
    await charge_chat_budget(request, user_id)
    return user_id


async def charge_chat_budget(request: Request, user_id: uuid.UUID) -> None:
    """Count one chat request (or completion, which share it) against the user's budget."""
    state = request.app.state
    limiter: RateLimiter = state.rate_limiter
    settings: Settings = state.settings
    await limiter.hit(settings.rate_limit_chat, [("chat:user", str(user_id))])


RouterDep = Annotated[ModelBalancer, Depends(get_router)]
GenerationsDep = Annotated[GenerationManager, Depends(get_generations)]
StreamsDep = Annotated[StreamStore, Depends(get_streams)]
OwnedConversation = Annotated[Conversation, Depends(valid_owned_conversation)]
OwnedStream = Annotated[uuid.UUID, Depends(valid_owned_stream)]
LastEventId = Annotated[int, Depends(last_event_id)]
ChatCaller = Annotated[uuid.UUID, Depends(get_chat_caller)]
