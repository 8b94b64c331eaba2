"""Google's Gemini API: `streamGenerateContent?alt=sse` (server-sent events), or
`generateContent` for deployments without streaming; the key in `x-goog-api-key`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import orjson

from vektor.llm.base import (
    ChatMessage,
    Finish,
    GenerationRequest,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
    Usage,
    arguments_object,
    parse_upstream,
)
from vektor.llm.config import DeploymentConfig
from vektor.llm.http import RETRYABLE_STATUSES, HttpProvider, content_type, post_json
from vektor.llm.providers import register
from vektor.llm.sse_reader import check_event_stream, read_body, read_events

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}  # the rest: a filter stopped it
# Google's documented placeholder for a function call replayed without the signature the
# model gave it (calls a client handed back through /v1): Gemini 3 refuses none at all.
SKIP_SIGNATURE = "skip_thought_signature_validator"
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def _parts(message: ChatMessage, names: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """A context message as a role and Gemini parts."""
    if message.role == "tool":
        name = names.get(message.tool_call_id or "", "")
        return "user", [
            {"functionResponse": {"name": name, "response": {"output": message.content}}}
        ]
    parts: list[dict[str, Any]] = [{"text": message.content}] if message.content else []
    for index, call in enumerate(message.tool_calls):
        part: dict[str, Any] = {
            "functionCall": {"name": call.name, "args": arguments_object(call.arguments)}
        }
        signature = call.signature or (SKIP_SIGNATURE if index == 0 else None)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return ("model" if message.role == "assistant" else "user"), parts or [{"text": ""}]


def _contents(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], str]:
    """`contents` (consecutive messages of one role merged) and the system instruction."""
    names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    system: list[str] = []
    for message in messages:
        names.update((call.id, call.name) for call in message.tool_calls)
        if message.role == "system":
            system.append(message.content)
            continue
        role, parts = _parts(message, names)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents, "\n\n".join(system)


def _tools(tools: list[dict[str, Any]], choice: str | dict[str, Any] | None) -> dict[str, Any]:
    """Chat-completions tools as function declarations (their JSON Schema as is, in
    `parametersJsonSchema`), and `tool_choice` as the function-calling mode."""
    declarations = []
    for tool in tools:
        function = tool.get("function") or tool
        declaration = {
            "name": function["name"],
            "parametersJsonSchema": function.get("parameters") or {"type": "object"},
        }
        if function.get("description"):
            declaration["description"] = function["description"]
        declarations.append(declaration)
    body: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
    config: dict[str, Any] | None = None
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        config = {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    elif isinstance(choice, str) and choice in TOOL_MODES:
        config = {"mode": TOOL_MODES[choice]}
    if config:
        body["toolConfig"] = {"functionCallingConfig": config}
    return body


@register("gemini")
class GeminiProvider(HttpProvider):
    """POST /v1beta/models/{model}:streamGenerateContent?alt=sse (or :generateContent)."""

    default_base_url: ClassVar[str] = DEFAULT_BASE_URL

    def __init__(self, config: DeploymentConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(config, session)
        model = quote(config.model.removeprefix("models/"), safe="")
        self.url = f"{self.base_url}/v1beta/models/{model}"

    def _headers(self) -> dict[str, str]:
        key = self.config.resolve_api_key()
        return {"x-goog-api-key": key} if key else {}

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        contents, system = _contents(request.messages)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        generation: dict[str, Any] = {}
        if request.temperature is not None:
            generation["temperature"] = request.temperature
        if request.max_tokens is not None:
            generation["maxOutputTokens"] = request.max_tokens
        if generation:
            body["generationConfig"] = generation
        if request.tools and self.config.tools:
            body.update(_tools(request.tools, request.tool_choice))
        return body

    async def stream(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Yield the answer as it arrives."""
        state = _ResponseState()
        streaming = self.config.streaming
        url = self.url + (":streamGenerateContent?alt=sse" if streaming else ":generateContent")
        async with post_json(
            self.session, url, self._body(request), self._headers(), self.timeout
        ) as response:
            if not streaming:
                for event in state.feed(await read_body(response.content.iter_any())):
                    yield event
            else:
                check_event_stream(content_type(response))
                async for sse in read_events(response.content.iter_any()):
                    for event in state.feed(sse.data):
                        yield event
        for event in state.finish():
            yield event

    async def aclose(self) -> None:
        """The HTTP client is shared and closed by its owner."""


class _ResponseState:
    """Assembles GenerateContentResponse objects into provider events."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []
        self.reason = "stop"
        self.finished = False  # a finishReason (or a blocked prompt) came
        self.usage: Usage | None = None

    def feed(self, data: str) -> list[ProviderEvent]:
        """Events of one response object; anything off-protocol is a ProviderError."""
        return parse_upstream("response", self._feed, data)

    def _feed(self, data: str) -> list[ProviderEvent]:
        payload = orjson.loads(data)
        if not isinstance(payload, dict):
            raise ProviderError("upstream sent an unexpected response", retryable=True)
        if "error" in payload:
            raise _error(payload["error"])
        usage = payload.get("usageMetadata")
        if isinstance(usage, dict):
            answer = int(usage.get("candidatesTokenCount") or 0)
            thoughts = int(usage.get("thoughtsTokenCount") or 0)  # billed as output
            self.usage = Usage(int(usage.get("promptTokenCount") or 0), answer + thoughts)
        if (payload.get("promptFeedback") or {}).get("blockReason"):
            self.finished, self.reason = True, "content_filter"
        events: list[ProviderEvent] = []
        for candidate in (payload.get("candidates") or [])[:1]:
            for part in (candidate.get("content") or {}).get("parts") or []:
                events.extend(self._part(part))
            if candidate.get("finishReason"):
                self.finished = True
                self.reason = FINISH_REASONS.get(str(candidate["finishReason"]), "content_filter")
        return events

    def _part(self, part: dict[str, Any]) -> list[ProviderEvent]:
        if part.get("thought"):
            return []  # a thought summary, not answer text
        call = part.get("functionCall")
        if call is not None:
            self.calls.append(
                ToolCall(
                    id=str(call.get("id") or f"call_{len(self.calls) + 1}"),
                    name=str(call["name"]),
                    arguments=orjson.dumps(call.get("args") or {}).decode(),
                    signature=part.get("thoughtSignature"),
                )
            )
            return []
        text = part.get("text")
        if not text:
            return []
        if not isinstance(text, str):
            raise ProviderError("upstream sent non-text content", retryable=True)
        return [TextDelta(text)]

    def finish(self) -> list[ProviderEvent]:
        """Tool calls, usage and finish; an answer that ended without a finishReason was cut."""
        if not self.finished:
            raise ProviderError("upstream ended the answer without a finishReason", retryable=True)
        events: list[ProviderEvent] = list(self.calls)
        if self.usage is not None:
            events.append(self.usage)
        events.append(Finish("tool_calls" if self.calls else self.reason))
        return events


def _error(error: Any) -> ProviderError:
    """An error object inside the stream, retryable as its HTTP status would be."""
    code = int(error.get("code") or 0) if isinstance(error, dict) else 0
    message = error.get("message", error) if isinstance(error, dict) else error
    retryable = code == 0 or code in RETRYABLE_STATUSES
    return ProviderError(f"upstream error: {str(message)[:200]}", retryable=retryable)
