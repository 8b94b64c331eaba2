"""The OpenAI shape in and out of the answer pipeline.

The client's own tools are forwarded and their calls handed back to the client. When the
request asks for Vektor's MCP tools (header `X-Vektor-Tools: mcp`), those are offered too
and Vektor runs the model's calls to them, up to MAX_TOOL_ROUNDS, before answering.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from vektor.answers.generate import generate
from vektor.answers.request import Answer, AnswerRequest
from vektor.answers.service import Pipeline, finish_answer
from vektor.compat.schemas import ChatCompletionRequest, V1Message
from vektor.llm.balancer import OpenedStream
from vektor.llm.base import ChatMessage, TextDelta, ToolCall


def answer_request(
    body: ChatCompletionRequest,
    user_id: uuid.UUID,
    *,
    use_mcp: bool,
    store: bool,
    api_key: uuid.UUID | None = None,
    no_cache: bool = False,
) -> AnswerRequest:
    """A completion request as the pipeline's: the client's context as given; `no_cache`
    (the Cache-Control header) bypasses the response cache."""
    choice = body.tool_choice
    return AnswerRequest(
        user_id=user_id,
        model=body.model,
        messages=[_message(m) for m in body.messages],
        source="v1",
        temperature=body.temperature,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        store=store,
        trim_context=False,
        mcp_tools=use_mcp,
        client_tools=[tool.model_dump(exclude_none=True) for tool in body.tools or []],
        hands_back_tools=True,
        api_key_id=api_key,
        cache=False if no_cache else body.cache,
        tool_choice=choice.model_dump()
        if choice is not None and not isinstance(choice, str)
        else choice,
    )


def _message(message: V1Message) -> ChatMessage:
    calls = tuple(
        ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
        for c in message.tool_calls or ()
    )
    return ChatMessage(
        role="system" if message.role == "developer" else message.role,
        content=message.text(),
        tool_calls=calls,
        tool_call_id=message.tool_call_id,
    )


def completion_id(answer: Answer) -> str:
    """The answer's id in OpenAI's form."""
    return f"chatcmpl-{answer.id.hex}"


def usage_object(answer: Answer) -> dict[str, int]:
    """The usage object."""
    usage = answer.usage()
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def tool_call_object(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    """A tool call in OpenAI's shape (with its index inside a chunk)."""
    data: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    if index is not None:
        data["index"] = index
    return data


def error_object(message: str) -> dict[str, Any]:
    """An upstream failure in OpenAI's error shape."""
    return {
        "error": {"message": message, "type": "api_error", "param": None, "code": "upstream_error"}
    }


def completion_object(answer: Answer) -> dict[str, Any]:
    """A whole chat.completion."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.tool_calls:
        message["tool_calls"] = [tool_call_object(call) for call in answer.tool_calls]
    return {
        "id": completion_id(answer),
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
        "usage": usage_object(answer),
    }


async def complete(pipeline: Pipeline, answer: Answer, opened: OpenedStream) -> bool:
    """Run the whole answer; whether it was stored."""
    try:
        async with aclosing(generate(answer, opened, pipeline.tools)) as pieces:
            async for _ in pieces:
                pass
    finally:
        stored = await finish_answer(pipeline, answer)
    return stored


async def chunks(
    pipeline: Pipeline, answer: Answer, opened: OpenedStream, include_usage: bool
) -> AsyncIterator[bytes]:
    """chat.completion.chunk events, then `data: [DONE]`; the answer is finished (slot,
    usage row, storing) before its last chunk is sent, and however the stream ends, the
    client leaving included."""
    head = {
        "id": completion_id(answer),
        "object": "chat.completion.chunk",
        "created": answer.created,
        "model": answer.model,
    }

    def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: %s\n\n" % orjson.dumps({**head, "choices": choices, **extra})

    def delta(content: dict[str, Any], finish: str | None = None) -> bytes:
        return frame([{"index": 0, "delta": content, "finish_reason": finish}])

    try:
        yield delta({"role": "assistant", "content": ""})
        index = 0
        async with aclosing(generate(answer, opened, pipeline.tools)) as pieces:
            async for piece in pieces:
                if isinstance(piece, TextDelta):
                    yield delta({"content": piece.content})
                else:
                    yield delta({"tool_calls": [tool_call_object(piece, index)]})
                    index += 1
        # The usage row is committed before the client can see the answer's end.
        await finish_answer(pipeline, answer)
        if answer.error is not None:
            yield b"data: %s\n\n" % orjson.dumps(error_object(answer.error))
        else:
            yield delta({}, answer.finish_reason)
            if include_usage:
                yield frame([], usage=usage_object(answer))
        yield b"data: [DONE]\n\n"
    finally:
        await opened.aclose()
        await finish_answer(pipeline, answer)
