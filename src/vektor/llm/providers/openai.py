"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio, …)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

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
    parse_upstream,
)
from vektor.llm.config import DeploymentConfig
from vektor.llm.http import HttpProvider, content_type, post_json
from vektor.llm.providers import register
from vektor.llm.sse_reader import EventDecoder, check_event_stream, read_body


def _message(message: ChatMessage) -> dict[str, Any]:
    """A context message in the chat-completions shape."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        body["content"] = message.content or None
        body["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return body


@register("openai")
class OpenAIProvider(HttpProvider):
    """Chat completions over HTTP, streamed as server-sent events."""

    default_base_url: ClassVar[str] = "https://api.openai.com/v1"

    def __init__(self, config: DeploymentConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(config, session)
        self.url = self.base_url + "/chat/completions"

    def _headers(self) -> dict[str, str]:
        key = self.config.resolve_api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [_message(m) for m in request.messages],
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.tools and self.config.tools:
            body["tools"] = request.tools
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        return body

    async def stream(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Yield the answer as it arrives."""
        if not self.config.streaming:
            async for event in self._complete(request):
                yield event
            return
        body = self._body(request, True)
        async with post_json(
            self.session, self.url, body, self._headers(), self.timeout
        ) as response:
            check_event_stream(content_type(response))
            parser = _ChunkParser()
            decoder = EventDecoder()
            async for chunk in response.content.iter_any():
                for sse in decoder.feed(chunk):
                    for event in parser.feed(sse.data):
                        yield event
                if parser.done:
                    break
            else:
                for sse in decoder.end():
                    for event in parser.feed(sse.data):
                        yield event
        for event in parser.finish():
            yield event

    async def _complete(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """A deployment without streaming: one request, the whole answer at once."""
        body = self._body(request, False)
        async with post_json(
            self.session, self.url, body, self._headers(), self.timeout
        ) as response:
            text = await read_body(response.content.iter_any())
        parser = _ChunkParser()
        for event in parser.feed(text, complete=True):
            yield event
        for event in parser.finish():
            yield event

    async def aclose(self) -> None:
        """The HTTP client is shared and closed by its owner."""


class _ChunkParser:
    """Assembles chat-completion chunks into provider events."""

    def __init__(self) -> None:
        self.tool_calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.done = False  # `data: [DONE]` came

    def feed(self, data: str, *, complete: bool = False) -> list[ProviderEvent]:
        """Events of one chunk; anything off-protocol is a ProviderError. Nothing counts
        after `[DONE]`."""
        if self.done:
            return []
        if not complete and data.strip() == "[DONE]":
            self.done = True
            return []
        return parse_upstream("chunk", self._feed, data, complete)

    def _feed(self, data: str, complete: bool) -> list[ProviderEvent]:
        chunk = orjson.loads(data)
        if not isinstance(chunk, dict):
            raise ProviderError("upstream sent an unexpected chunk", retryable=True)
        if "error" in chunk:
            raise ProviderError(f"upstream error: {str(chunk['error'])[:200]}", retryable=True)
        events: list[ProviderEvent] = []
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = Usage(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        for choice in chunk.get("choices") or []:
            delta = choice.get("message" if complete else "delta") or {}
            content = delta.get("content")
            if content:
                if not isinstance(content, str):
                    raise ProviderError("upstream sent non-text content", retryable=True)
                events.append(TextDelta(content))
            for call in delta.get("tool_calls") or []:
                slot = self.tool_calls.setdefault(
                    int(call.get("index", len(self.tool_calls))),
                    {"id": "", "name": "", "arguments": ""},
                )
                function = call.get("function") or {}
                slot["id"] = call.get("id") or slot["id"]
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[ProviderEvent]:
        events: list[ProviderEvent] = [
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}")
            for i, c in sorted(self.tool_calls.items())
        ]
        if self.usage is not None:
            events.append(self.usage)
        events.append(Finish(self.finish_reason or "stop"))
        return events
