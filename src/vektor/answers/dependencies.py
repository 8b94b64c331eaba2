"""Dependencies of the answer routes: the caller (with their chat budget), streams they
own, and Last-Event-ID."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials

from vektor.auth.dependencies import BEARER, CallerId, get_caller_id
from vektor.core.access import who_may_call
from vektor.core.errors import BadRequest, NotFound
from vektor.state import app_state


async def valid_owned_stream(
    message_id: uuid.UUID, user_id: CallerId, request: Request
) -> uuid.UUID:
    """An answer stream of the caller's, or 404 (unknown, expired or someone else's)."""
    if await app_state(request).event_log.owner(message_id) != user_id:
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


@who_may_call("user")
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
    """Count one answer request (chat or completion, which share it) against the budget."""
    state = app_state(request)
    await state.rate_limiter.hit(state.settings.rate_limit_chat, [("chat:user", str(user_id))])


OwnedStream = Annotated[uuid.UUID, Depends(valid_owned_stream)]
LastEventId = Annotated[int, Depends(last_event_id)]
ChatCaller = Annotated[uuid.UUID, Depends(get_chat_caller)]
