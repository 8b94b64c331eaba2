"""Anthropic's Messages API, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
import orjson

from vektor.llm.base import (
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
from vektor.llm.sse_reader import check_event_stream, read_events

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


@register("anthropic")
class AnthropicProvider(HttpProvider):
    """POST /v1/messages with `stream: true`."""

    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    # The Messages API continues a trailing assistant message (prefill).
    continues_prefill: ClassVar[bool] = True

    def __init__(self, config: DeploymentConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(config, session)
        self.url = self.base_url + "/v1/messages"

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": request.max_tokens or self.config.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role in ("user", "assistant")
            ],
            "stream": True,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, 1.0)
        return body

    async def stream(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Yield the answer as it arrives."""
        headers = {"anthropic-version": API_VERSION}
        key = self.config.resolve_api_key()
        if key:
            headers["x-api-key"] = key
        async with post_json(
            self.session, self.url, self._body(request), headers, self.timeout
        ) as response:
            check_event_stream(content_type(response))
            state = _MessageState()
            async for sse in read_events(response.content.iter_any()):
                for event in state.feed(sse.event, sse.data):
                    yield event
                if state.stopped:
                    break
        for event in state.finish():
            yield event

    async def aclose(self) -> None:
        """The HTTP client is shared and closed by its owner."""


class _MessageState:
    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.stop_reason = "stop"
        self.stopped = False
        self.tools: dict[int, dict[str, str]] = {}

    def feed(self, event: str, data: str) -> list[ProviderEvent]:
        """Events of one server event; anything off-protocol is a ProviderError."""
        return parse_upstream("event", self._feed, event, data)

    def _feed(self, event: str, data: str) -> list[ProviderEvent]:
        payload = orjson.loads(data) if data else {}
        if not isinstance(payload, dict):
            raise ProviderError("upstream sent an unexpected event", retryable=True)
        kind = payload.get("type", event)
        if kind == "error":
            error = payload.get("error") or {}
            retryable = error.get("type") in ("overloaded_error", "api_error", "rate_limit_error")
            raise ProviderError(f"upstream error: {error.get('message', '')}", retryable=retryable)
        if kind == "message_start":
            usage = (payload.get("message") or {}).get("usage") or {}
            self.input_tokens = int(usage.get("input_tokens") or 0)
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "tool_use":
                self.tools[int(payload.get("index", 0))] = {
                    "id": block.get("id", ""),
                    "name": block.get("name", ""),
                    "arguments": "",
                }
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [TextDelta(str(delta["text"]))]
            if delta.get("type") == "input_json_delta":
                slot = self.tools.get(int(payload.get("index", 0)))
                if slot is not None:
                    slot["arguments"] += delta.get("partial_json", "")
        elif kind == "message_delta":
            reason = (payload.get("delta") or {}).get("stop_reason")
            if reason:
                self.stop_reason = STOP_REASONS.get(reason, reason)
            usage = payload.get("usage") or {}
            self.output_tokens = int(usage.get("output_tokens") or self.output_tokens)
        elif kind == "message_stop":
            self.stopped = True
        return []

    def finish(self) -> list[ProviderEvent]:
        events: list[ProviderEvent] = [
            ToolCall(id=t["id"], name=t["name"], arguments=t["arguments"] or "{}")
            for _, t in sorted(self.tools.items())
        ]
        events.append(Usage(self.input_tokens, self.output_tokens))
        events.append(Finish(self.stop_reason))
        return events
