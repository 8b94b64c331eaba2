"""/v1/models and /v1/chat/completions in the OpenAI shape."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.background import BackgroundTask

from vektor.answers.cache_keys import no_cache_header
from vektor.answers.dependencies import charge_chat_budget
from vektor.answers.service import finish_answer, open_answer
from vektor.apikeys.dependencies import API_BEARER, ApiUserId, get_api_user, used_api_key
from vektor.chat.dependencies import RouterDep
from vektor.compat import service
from vektor.compat.schemas import ChatCompletionRequest
from vektor.core.access import who_may_call
from vektor.core.openapi import sse_content
from vektor.core.streaming import SSE_HEADERS, EventStreamResponse
from vektor.state import app_state

router = APIRouter(prefix="/v1", tags=["openai"])
CACHE_HEADER = "X-Vektor-Cache"

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
    cache_control: Annotated[str | None, Header()] = None,
) -> Any:
    """Answer like OpenAI's chat completions, through Vektor's router and limits.

    `X-Vektor-Tools: mcp` adds Vektor's MCP tools (run by Vektor); `X-Vektor-Store: true`
    stores the exchange as a conversation (its id in the `X-Vektor-Conversation-Id` header
    of a non-streamed answer). `X-Vektor-Cache` says whether the answer came from the
    response cache (`hit`) or not (`miss`); `Cache-Control: no-cache` bypasses it.
    """
    pipeline = app_state(request).pipeline
    use_mcp = (x_vektor_tools or "").strip().lower() == "mcp"
    asked = service.answer_request(
        body,
        user_id,
        use_mcp=use_mcp,
        store=_flag(x_vektor_store),
        api_key=used_api_key(request),
        no_cache=no_cache_header(cache_control),
    )
    answer, opened = await open_answer(pipeline, asked)
    cache = {CACHE_HEADER: "hit" if answer.cached else "miss"}
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)

        async def cleanup() -> None:  # also when the client left before the first byte
            await opened.aclose()
            await finish_answer(pipeline, answer)

        return EventStreamResponse(
            service.chunks(pipeline, answer, opened, usage),
            headers={**SSE_HEADERS, **cache},
            background=BackgroundTask(cleanup),
        )
    stored = await service.complete(pipeline, answer, opened)
    if answer.error is not None:
        return JSONResponse(service.error_object(answer.error), status_code=502, headers=cache)
    if stored:
        cache["X-Vektor-Conversation-Id"] = str(answer.conversation_id)
    return JSONResponse(service.completion_object(answer), headers=cache)
