"""Chat dependencies: the model balancer, and conversations loaded with ownership."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from vektor.auth.dependencies import CallerId
from vektor.chat.models import Conversation
from vektor.chat.repository import ConversationRepository
from vektor.core.dependencies import SessionDep
from vektor.core.errors import NotFound
from vektor.llm.balancer import ModelBalancer
from vektor.state import app_state


async def get_router(request: Request) -> ModelBalancer:
    """The app's model balancer."""
    return app_state(request).balancer


async def valid_owned_conversation(
    conversation_id: uuid.UUID, user_id: CallerId, session: SessionDep
) -> Conversation:
    """The conversation, or 404 when it does not exist or is someone else's."""
    conversation = await ConversationRepository(session).get_owned(conversation_id, user_id)
    if conversation is None:
        raise NotFound("Conversation not found")
    return conversation


RouterDep = Annotated[ModelBalancer, Depends(get_router)]
OwnedConversation = Annotated[Conversation, Depends(valid_owned_conversation)]
