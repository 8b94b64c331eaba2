"""/v1/models and /v1/chat/completions in the OpenAI shape."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.background import BackgroundTask

from vektor.apikeys.dependencies import API_BEARER, ApiUserId, get_api_user
from vektor.chat.dependencies import RouterDep, charge_chat_budget
from vektor.compat import service
from vektor.compat.schemas import ChatCompletionRequest
from vektor.core.access import who_may_call
from vektor.core.openapi import sse_content
from vektor.core.streaming import SSE_HEADERS, EventStreamResponse
from vektor.llm.base import ToolCall

router = APIRouter(prefix="/v1", tags=["openai"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid, expired or revoked API key"},
    404: {"description": "Unknown model"},
    422: {"description": "Invalid request"},
    429: {"description": "Rate limit or too many completions in progress"},
    503: {"description": "No deployment of the model could start"},
}


@who_may_call("user or API key")
async def get_completions_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(API_BEARER)],
) -> uuid.UUID:
    """The caller of a completion, counted against the user's chat budget, which
    completions share: one dependency, as for `/chat/stream`."""
    user_id = await get_api_user(request, credentials)
    await charge_chat_budget(request, user_id)
    return user_id


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@router.get("/models", operation_id="v1_list_models", responses={401: ERRORS[401]})
async def list_models(_user_id: ApiUserId, model_router: RouterDep) -> dict[str, Any]:
    """The public models, in the OpenAI list shape."""
    return {
        "object": "list",
        "data": [
            {"id": m["name"], "object": "model", "created": 0, "owned_by": "vektor"}
            for m in model_router.models()
        ],
    }


@router.post(
    "/chat/completions",
    operation_id="v1_chat_completions",
    responses={
        200: {
            "description": "A chat.completion object, or chat.completion.chunk server-sent "
            "events ending with `data: [DONE]` when `stream` is true",
            "content": sse_content(),
        },
        **ERRORS,
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    user_id: Annotated[uuid.UUID, Depends(get_completions_caller)],
    x_vektor_tools: Annotated[str | None, Header()] = None,
    x_vektor_store: Annotated[str | None, Header()] = None,
) -> Any:
    """Answer like OpenAI's chat completions, through Vektor's router and limits.

    `X-Vektor-Tools: mcp` adds Vektor's MCP tools (run by Vektor); `X-Vektor-Store: true`
    stores the exchange as a conversation (its id in the `X-Vektor-Conversation-Id` header
    of a non-streamed answer).
    """
    state = request.app.state
    services = service.Services(
        settings=state.settings,
        router=state.model_router,
        manager=state.generations,
        registry=state.mcp,
    )
    use_mcp = (x_vektor_tools or "").strip().lower() == "mcp"
    completion, opened = await service.open_completion(services, user_id, body, use_mcp)
    store = _flag(x_vektor_store)
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        events = service.run(services, completion, opened)

        async def cleanup() -> None:  # also when the client left before the first byte
            await events.aclose()
            await opened.aclose()
            await service.finish(services, completion, store)

        return EventStreamResponse(
            _chunks(completion, events, usage, cleanup),
            headers=SSE_HEADERS,
            background=BackgroundTask(cleanup),
        )
    try:
        async for _ in service.run(services, completion, opened):
            pass
    finally:
        conversation_id = await service.finish(services, completion, store)
    if completion.error is not None:
        return _upstream_failed(completion.error)
    headers = {"X-Vektor-Conversation-Id": str(conversation_id)} if conversation_id else None
    return JSONResponse(_completion_object(completion), headers=headers)


def _upstream_failed(message: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "message": message,
                "type": "api_error",
                "param": None,
                "code": "upstream_error",
            }
        },
        status_code=502,
    )


def _tool_call(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    if index is not None:
        data["index"] = index
    return data


def _completion_object(completion: service.Completion) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(completion.text) or None}
    if completion.tool_calls:
        message["tool_calls"] = [_tool_call(call) for call in completion.tool_calls]
    return {
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "choices": [{"index": 0, "message": message, "finish_reason": completion.finish_reason}],
        "usage": completion.usage(),
    }


async def _chunks(
    completion: service.Completion,
    events: AsyncGenerator[str | ToolCall, None],
    include_usage: bool,
    cleanup: Callable[[], Awaitable[None]],
) -> AsyncIterator[bytes]:
    """chat.completion.chunk events, then `data: [DONE]`."""
    head = {
        "id": completion.id,
        "object": "chat.completion.chunk",
        "created": completion.created,
        "model": completion.model,
    }

    def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: %s\n\n" % orjson.dumps({**head, "choices": choices, **extra})

    def delta(content: dict[str, Any], finish: str | None = None) -> bytes:
        return frame([{"index": 0, "delta": content, "finish_reason": finish}])

    try:
        yield delta({"role": "assistant", "content": ""})
        index = 0
        async for piece in events:
            if isinstance(piece, str):
                yield delta({"content": piece})
            else:
                yield delta({"tool_calls": [_tool_call(piece, index)]})
                index += 1
        if completion.error is not None:
            error = {"message": completion.error, "type": "api_error", "code": "upstream_error"}
            yield b"data: %s\n\n" % orjson.dumps({"error": error})
        else:
            yield delta({}, completion.finish_reason)
            if include_usage:
                yield frame([], usage=completion.usage())
        yield b"data: [DONE]\n\n"
    finally:
        await cleanup()
