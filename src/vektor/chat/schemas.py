"""Request and response bodies of the chat domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class MessageIn(BaseModel):
    """A message sent by the client."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(min_length=1)]


class ChatRequest(BaseModel):
    """POST /chat/stream. Sizes are checked against the settings by the service."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=128)]
    messages: Annotated[list[MessageIn], Field(min_length=1)]
    conversation_id: uuid.UUID | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    tools: bool = True
    # The response cache (SPEC §3.11): true asks for it at any temperature, false bypasses it.
    cache: bool | None = None


class ConversationSummary(BaseModel):
    """A row of GET /chat/history."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    model: str
    created_at: datetime
    updated_at: datetime
    message_count: int


class MessageRead(BaseModel):
    """A stored message."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    role: str
    content: str
    created_at: datetime
    model: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ConversationRead(BaseModel):
    """A conversation with its messages in order."""

    id: uuid.UUID
    title: str
    model: str
    created_at: datetime
    updated_at: datetime
    messages: list[MessageRead]


class ModelRead(BaseModel):
    """A public model."""

    name: str
    description: str | None
    provider: str
    streaming: bool
