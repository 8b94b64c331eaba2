"""Ollama's native chat API: POST {base_url}/api/chat, answered as newline-delimited JSON
(one object per line, the last with `done: true` and the token counts)."""

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
    arguments_object,
    parse_upstream,
)
from vektor.llm.config import DeploymentConfig
from vektor.llm.http import HttpProvider, post_json
from vektor.llm.providers import register
from vektor.llm.sse_reader import MAX_EVENT_BYTES, read_body

DEFAULT_BASE_URL = "http://localhost:11434"
DONE_REASONS = {"stop": "stop", "length": "length"}


def _messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The context in Ollama's shape; a tool result names its tool (`tool_name`), found
    from the calls before it."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        names.update((call.id, call.name) for call in message.tool_calls)
        body: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.role == "tool":
            body["tool_name"] = names.get(message.tool_call_id or "", "")
        if message.tool_calls:
            body["tool_calls"] = [
                {"function": {"name": c.name, "arguments": arguments_object(c.arguments)}}
                for c in message.tool_calls
            ]
        out.append(body)
    return out


class LineDecoder:
    """The complete lines of a body fed as it arrives, each at most `limit` bytes."""

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self.limit = limit
        self.buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The non-empty lines `chunk` completed."""
        lines = (self.buffer + chunk).split(b"\n")
        self.buffer = lines.pop()
        if len(self.buffer) > self.limit or any(len(line) > self.limit for line in lines):
            raise ProviderError(f"upstream sent a line over {self.limit} bytes", retryable=False)
        return [line for line in lines if line.strip()]

    def end(self) -> list[bytes]:
        """The last line, when the body ended without a newline."""
        return [self.buffer] if self.buffer.strip() else []


@register("ollama")
class OllamaProvider(HttpProvider):
    """POST /api/chat, streamed (NDJSON) or with `stream: false`."""

    default_base_url: ClassVar[str] = DEFAULT_BASE_URL

    def __init__(self, config: DeploymentConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(config, session)
        self.url = self.base_url + "/api/chat"

    def _headers(self) -> dict[str, str]:
        key = self.config.resolve_api_key()  # Ollama behind an authenticating proxy
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": _messages(request.messages),
            "stream": stream,
        }
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if options:
            body["options"] = options
        if request.tools and self.config.tools:
            body["tools"] = request.tools
        return body

    async def stream(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Yield the answer as it arrives."""
        state = _ChatState()
        streaming = self.config.streaming
        body = self._body(request, streaming)
        async with post_json(self.session, self.url, body, self._headers(), self.timeout) as r:
            if not streaming:
                for event in state.feed(await read_body(r.content.iter_any())):
                    yield event
            else:
                async for event in _read_lines(r, state):
                    yield event
        for event in state.finish():
            yield event

    async def aclose(self) -> None:
        """The HTTP client is shared and closed by its owner."""


async def _read_lines(
    response: aiohttp.ClientResponse, state: _ChatState
) -> AsyncIterator[ProviderEvent]:
    """The events of a streamed answer, up to its `done` line."""
    decoder = LineDecoder()
    async for chunk in response.content.iter_any():
        for line in decoder.feed(chunk):
            for event in state.feed(line):
                yield event
        if state.done:
            return
    for line in decoder.end():
        for event in state.feed(line):
            yield event


class _ChatState:
    """Assembles Ollama's answer objects into provider events."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []
        self.reason = "stop"
        self.usage = Usage(0, 0)
        self.done = False

    def feed(self, line: str | bytes) -> list[ProviderEvent]:
        """Events of one object; anything off-protocol is a ProviderError."""
        return parse_upstream("object", self._feed, line)

    def _feed(self, line: str | bytes) -> list[ProviderEvent]:
        data = orjson.loads(line)
        if not isinstance(data, dict):
            raise ProviderError("upstream sent an unexpected object", retryable=True)
        if "error" in data:
            raise ProviderError(f"upstream error: {str(data['error'])[:200]}", retryable=True)
        message = data.get("message") or {}
        events: list[ProviderEvent] = []
        content = message.get("content")
        if content:
            if not isinstance(content, str):
                raise ProviderError("upstream sent non-text content", retryable=True)
            events.append(TextDelta(content))
        for call in message.get("tool_calls") or []:
            function = call["function"]
            arguments = function.get("arguments") or {}
            if not isinstance(arguments, str):
                arguments = orjson.dumps(arguments).decode()
            call_id = call.get("id") or f"call_{len(self.calls) + 1}"
            self.calls.append(ToolCall(id=call_id, name=str(function["name"]), arguments=arguments))
        if data.get("done"):
            self.done = True
            self.reason = DONE_REASONS.get(str(data.get("done_reason") or "stop"), "stop")
            prompt, answer = data.get("prompt_eval_count"), data.get("eval_count")
            self.usage = Usage(int(prompt or 0), int(answer or 0))
        return events

    def finish(self) -> list[ProviderEvent]:
        """Tool calls, usage and finish; an answer that ended before `done` is a failure."""
        if not self.done:
            raise ProviderError("upstream ended the answer before `done`", retryable=True)
        reason = "tool_calls" if self.calls else self.reason
        return [*self.calls, self.usage, Finish(reason)]
