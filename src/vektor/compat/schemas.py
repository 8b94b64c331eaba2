"""Requests of the OpenAI chat-completions API, as far as Vektor honours them.

Fields Vektor does not use (`top_p`, `user`, `seed`, …) are accepted and ignored, as other
OpenAI-compatible servers do, so unchanged clients keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class TextPart(BaseModel):
    """A content part; only text parts are supported."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: Annotated[str, Field(max_length=1_000_000)]


class FunctionCall(BaseModel):
    """The function a tool call names, with its JSON arguments."""

    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(pattern=TOOL_NAME)]
    arguments: Annotated[str, Field(max_length=100_000)] = "{}"


class MessageToolCall(BaseModel):
    """A tool call made by the assistant earlier in the conversation."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=128)]
    type: Literal["function"] = "function"
    function: FunctionCall


class V1Message(BaseModel):
    """One message of the conversation sent by the client."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: Annotated[str | None, Field(max_length=64)] = None
    tool_calls: Annotated[list[MessageToolCall] | None, Field(max_length=128)] = None
    tool_call_id: Annotated[str | None, Field(max_length=128)] = None

    def text(self) -> str:
        """The content as one string."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionSpec(BaseModel):
    """A function the client offers the model."""

    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(pattern=TOOL_NAME)]
    description: Annotated[str | None, Field(max_length=10_000)] = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class V1Tool(BaseModel):
    """A tool the client offers the model; the client runs it."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: FunctionSpec


class NamedFunction(BaseModel):
    """`{"name": …}` inside a named tool choice."""

    name: Annotated[str, Field(pattern=TOOL_NAME)]


class NamedToolChoice(BaseModel):
    """Force the model to call one function."""

    type: Literal["function"]
    function: NamedFunction


class StreamOptions(BaseModel):
    """Streaming options: a last chunk with the usage when asked."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions."""

    model_config = ConfigDict(extra="ignore")

    model: Annotated[str, Field(min_length=1, max_length=200)]
    messages: Annotated[list[V1Message], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    max_tokens: Annotated[int | None, Field(ge=1)] = None
    max_completion_tokens: Annotated[int | None, Field(ge=1)] = None
    tools: Annotated[list[V1Tool] | None, Field(max_length=128)] = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    n: Annotated[int | None, Field(ge=1, le=1, description="Only one choice is supported")] = None
    # Vektor's response cache (SPEC §3.11): true asks for it at any temperature, false
    # bypasses it (as does `Cache-Control: no-cache`).
    cache: bool | None = None

    @field_validator("messages")
    @classmethod
    def _roles(cls, messages: list[V1Message]) -> list[V1Message]:
        for message in messages:
            if message.role == "tool" and not message.tool_call_id:
                raise ValueError("a tool message needs tool_call_id")
        return messages
