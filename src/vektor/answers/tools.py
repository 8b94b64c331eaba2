"""Tool rounds inside an answer: the model asks, MCP tools run, the model goes on."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from vektor.answers.request import Answer
from vektor.llm.balancer import ModelBalancer, OpenedStream
from vektor.llm.base import ChatMessage, ToolCall
from vektor.mcp.pool import SEPARATOR, ProgressFn, ToolResult
from vektor.mcp.registry import McpRegistry

# Receives the tool events of an answer (`tool_call`, `tool_progress`, `tool_result`), which
# happen inside a call rather than between the model's events.
Observer = Callable[[dict[str, Any]], object]


class ToolRunner:
    """Runs one round of tool calls and opens the model's continuation."""

    def __init__(
        self, registry: McpRegistry, balancer: ModelBalancer, *, max_rounds: int, timeout_s: float
    ) -> None:
        self.registry = registry
        self.balancer = balancer
        self.max_rounds = max_rounds
        self.timeout_s = timeout_s

    async def run_round(
        self, answer: Answer, calls: list[ToolCall], text: str, observe: Observer | None
    ) -> OpenedStream:
        """Run each call, tell the observer, remember them, and ask the model to go on."""
        messages = [
            *answer.request.messages,
            ChatMessage(role="assistant", content=text, tool_calls=tuple(calls)),
        ]
        for call in calls:
            content, is_error = await self._call(call, observe, call.name in answer.mcp_tools)
            answer.tool_log.append(tool_record(call, content, is_error))
            messages.append(ChatMessage(role="tool", content=content, tool_call_id=call.id))
        answer.request = replace(answer.request, messages=messages)
        return await self.balancer.open(answer.model, answer.request)

    async def _call(
        self, call: ToolCall, observe: Observer | None, offered: bool
    ) -> tuple[str, bool]:
        """Run one call; a tool the model was not offered (a pool the user may not use) is
        never run, and answers as an unknown tool does."""
        server = call.name.partition(SEPARATOR)[0]
        event = {"id": call.id, "name": call.name}
        if observe is not None:
            observe({"type": "tool_call", **event, "arguments": call.arguments, "server": server})
        if not offered:
            result = ToolResult(f"Unknown tool {call.name}", is_error=True)
        else:
            progress = _progress(observe, event) if observe is not None else None
            result = await self.registry.call(call.name, call.arguments, self.timeout_s, progress)
        if observe is None:
            return result.content, result.is_error
        observe(
            {"type": "tool_result", **event, "content": result.content, "is_error": result.is_error}
        )
        return result.content, result.is_error


def _progress(observe: Observer, event: dict[str, Any]) -> ProgressFn:
    async def progressed(progress: float, total: float | None, message: str | None) -> None:
        observe(
            {
                "type": "tool_progress",
                **event,
                "progress": progress,
                "total": total,
                "message": message,
            }
        )

    return progressed


def tool_record(call: ToolCall, content: str, is_error: bool) -> dict[str, Any]:
    """How a tool call is kept with the conversation (a message of role `tool`)."""
    return {
        "id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "result": content,
        "is_error": is_error,
    }


def tool_message_content(record: dict[str, Any]) -> str:
    """The stored text of a tool message."""
    return json.dumps(record, ensure_ascii=False)
