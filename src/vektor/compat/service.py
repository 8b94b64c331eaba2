"""Chat completions in the OpenAI shape, on Vektor's router, limits and MCP tools.

The client's own tools are forwarded and their calls handed back to the client. When the
request asks for Vektor's MCP tools (header `X-Vektor-Tools: mcp`), those are offered too
and Vektor runs the model's calls to them, up to MAX_TOOL_ROUNDS, before answering.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from sqlalchemy.exc import SQLAlchemyError

from vektor.chat.generation import GenerationManager
from vektor.chat.service import make_title
from vektor.chat.tools import tool_message_content, tool_record
from vektor.chat.writes import ChatWrites, NewMessage
from vektor.compat.schemas import ChatCompletionRequest, V1Message
from vektor.core.config import Settings
from vektor.core.database import new_id
from vektor.core.errors import Invalid, NotFound, RateLimited
from vektor.llm.balancer import ModelBalancer, OpenedStream
from vektor.llm.base import (
    ChatMessage,
    Finish,
    GenerationRequest,
    ProviderError,
    TextDelta,
    ToolCall,
    Usage,
)
from vektor.mcp.registry import McpRegistry
from vektor.monitoring.metrics import count_tokens, stream_ended, stream_started

FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


@dataclass
class Completion:
    """One completion in progress: what the client gets, and what may be stored."""

    id: str
    model: str
    created: int
    user_id: uuid.UUID
    request: GenerationRequest
    mcp_tools: set[str]
    client_messages: int = 0
    tool_log: list[dict[str, Any]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    error: str | None = None
    finished: bool = False

    def usage(self) -> dict[str, int]:
        """The usage object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass(frozen=True, slots=True)
class Services:
    """What a completion needs from the app."""

    settings: Settings
    router: ModelBalancer
    manager: GenerationManager
    registry: McpRegistry | None


def _context(messages: list[V1Message], settings: Settings) -> list[ChatMessage]:
    """The client's messages as the model's context, within the message limits."""
    if len(messages) > settings.max_messages_per_request:
        raise Invalid(f"At most {settings.max_messages_per_request} messages per request")
    context = []
    for message in messages:
        text = message.text()
        if len(text) > settings.max_message_chars:
            raise Invalid(f"A message may have at most {settings.max_message_chars} characters")
        calls = tuple(
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in message.tool_calls or ()
        )
        role = "system" if message.role == "developer" else message.role
        context.append(
            ChatMessage(
                role=role,
                content=text,
                tool_calls=calls,
                tool_call_id=message.tool_call_id,
            )
        )
    return context


async def open_completion(
    services: Services, user_id: uuid.UUID, body: ChatCompletionRequest, use_mcp: bool
) -> tuple[Completion, OpenedStream]:
    """Check the request, take a stream slot and open a deployment (404/422/429/503 here,
    before anything is sent). The caller must `finish` the completion."""
    settings = services.settings
    context = _context(body.messages, settings)
    if not services.router.has_model(body.model):
        raise NotFound(f"The model '{body.model}' does not exist")
    client_tools = [tool.model_dump(exclude_none=True) for tool in body.tools or []]
    mcp_specs = services.registry.tool_specs() if use_mcp and services.registry else []
    tools = client_tools + mcp_specs
    names = [t["function"]["name"] for t in tools]
    if len(names) != len(set(names)):
        raise Invalid("Tool names must be unique (Vektor's MCP tools are named <server>__<tool>)")
    choice = body.tool_choice
    asked = body.max_completion_tokens or body.max_tokens or settings.max_answer_tokens
    max_tokens = min(
        asked,
        settings.max_answer_tokens,
        services.router.max_tokens(body.model) or settings.max_answer_tokens,
    )
    request = GenerationRequest(
        messages=context,
        temperature=body.temperature,
        max_tokens=max_tokens,
        tools=tools,
        tool_choice=choice.model_dump()
        if choice is not None and not isinstance(choice, str)
        else choice,
    )
    if not services.manager.reserve(user_id, settings.max_concurrent_streams):
        raise RateLimited(1, "Too many completions in progress")
    try:
        opened = await services.router.open(body.model, request)
    except BaseException:
        services.manager.release(user_id)
        raise
    stream_started()
    completion = Completion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        model=body.model,
        created=int(time.time()),
        user_id=user_id,
        request=request,
        mcp_tools={spec["function"]["name"] for spec in mcp_specs},
        client_messages=len(context),
    )
    return completion, opened


async def run(
    services: Services, completion: Completion, opened: OpenedStream
) -> AsyncGenerator[str | ToolCall, None]:
    """The answer's text pieces and the tool calls for the client, running MCP tool rounds
    in between. Fills in usage, finish reason and error; always closes the upstream."""
    rounds = 0
    current: OpenedStream | None = opened
    while current is not None:
        calls: list[ToolCall] = []
        finish = "stop"
        try:
            async for event in current.events():
                if isinstance(event, TextDelta):
                    completion.text.append(event.content)
                    yield event.content
                elif isinstance(event, ToolCall):
                    calls.append(event)
                elif isinstance(event, Usage):
                    completion.prompt_tokens += event.prompt_tokens
                    completion.completion_tokens += event.completion_tokens
                elif isinstance(event, Finish):
                    finish = FINISH_REASONS.get(event.reason, "stop")
        except ProviderError as exc:
            completion.error = str(exc)
            completion.finish_reason = "error"
            return
        finally:
            await current.aclose()
        current = None
        ours = [call for call in calls if call.name in completion.mcp_tools]
        if calls and len(ours) == len(calls) and rounds < services.settings.max_tool_rounds:
            rounds += 1
            current = await _tool_round(services, completion, calls)
            continue
        for call in calls:
            completion.tool_calls.append(call)
            yield call
        completion.finish_reason = "tool_calls" if calls else finish


async def _tool_round(
    services: Services, completion: Completion, calls: list[ToolCall]
) -> OpenedStream:
    """Run the model's MCP tool calls and open its continuation."""
    assert services.registry is not None
    text = "".join(completion.text)
    messages = [
        *completion.request.messages,
        ChatMessage(role="assistant", content=text, tool_calls=tuple(calls)),
    ]
    for call in calls:
        result = await services.registry.call(
            call.name, call.arguments, services.settings.tool_call_timeout_seconds
        )
        messages.append(ChatMessage(role="tool", content=result.content, tool_call_id=call.id))
        completion.tool_log.append(tool_record(call, result.content, result.is_error))
    completion.request = replace(completion.request, messages=messages)
    return await services.router.open(completion.model, completion.request)


async def finish(services: Services, completion: Completion, store: bool) -> uuid.UUID | None:
    """Give the stream slot back; store the exchange when the client asked for it. Only the
    first call does anything."""
    if completion.finished:
        return None
    completion.finished = True
    services.manager.release(completion.user_id)
    stream_ended()
    count_tokens(completion.model, completion.prompt_tokens, completion.completion_tokens)
    if not store:
        return None
    conversation_id = await _store(services.manager.writes, completion)
    if conversation_id is not None:
        await services.manager.events.publish(
            completion.user_id, "conversation.created", conversation_id
        )
    return conversation_id


async def _store(writes: ChatWrites, completion: Completion) -> uuid.UUID | None:
    """The client's messages, the tool calls Vektor ran and the answer as a new
    conversation (stored like a chat's), in one transaction."""
    now = datetime.now(UTC)
    conversation_id = new_id()
    sent = completion.request.messages[: completion.client_messages]
    stored = [(m.role, m.content) for m in sent]
    stored += [("tool", tool_message_content(record)) for record in completion.tool_log]
    messages = [NewMessage(id=new_id(), role=role, content=content) for role, content in stored]
    messages.append(
        NewMessage(
            id=new_id(),
            role="assistant",
            content="".join(completion.text),
            model=completion.model,
            finish_reason=completion.finish_reason,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )
    )
    try:
        await writes.start_conversation(
            conversation_id=conversation_id,
            user_id=completion.user_id,
            title=make_title(sent),
            model=completion.model,
            messages=messages,
            at=now,
        )
    except (SQLAlchemyError, OSError) as exc:
        logger.error("could not store completion {}: {}", completion.id, exc)
        return None
    return conversation_id
