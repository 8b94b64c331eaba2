"""Tool rounds inside an answer: the model asks, MCP tools run, the model goes on."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vektor.chat.streams import StreamStore
from vektor.llm.balancer import ModelBalancer, OpenedStream
from vektor.llm.base import ChatMessage, ToolCall
from vektor.mcp.pool import SEPARATOR
from vektor.mcp.registry import McpRegistry

if TYPE_CHECKING:
    from vektor.chat.generation import Generation


class ToolRunner:
    """Runs one round of tool calls and opens the model's continuation."""

    def __init__(
        self, registry: McpRegistry, router: ModelBalancer, *, max_rounds: int, timeout_s: float
    ) -> None:
        self.registry = registry
        self.router = router
        self.max_rounds = max_rounds
        self.timeout_s = timeout_s

    async def run_round(
        self, generation: Generation, calls: list[ToolCall], text: str, streams: StreamStore
    ) -> OpenedStream:
        """Publish each call and its result, remember them, and ask the model to go on."""
        assert generation.request is not None
        messages = [
            *generation.request.messages,
            ChatMessage(role="assistant", content=text, tool_calls=tuple(calls)),
        ]
        for call in calls:
            streams.publish(
                generation.message_id,
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": call.name,
                    "arguments": call.arguments,
                    "server": call.name.partition(SEPARATOR)[0],
                },
            )

            async def progressed(
                progress: float, total: float | None, message: str | None, call: ToolCall = call
            ) -> None:
                streams.publish(
                    generation.message_id,
                    {
                        "type": "tool_progress",
                        "id": call.id,
                        "name": call.name,
                        "progress": progress,
                        "total": total,
                        "message": message,
                    },
                )

            result = await self.registry.call(call.name, call.arguments, self.timeout_s, progressed)
            streams.publish(
                generation.message_id,
                {
                    "type": "tool_result",
                    "id": call.id,
                    "name": call.name,
                    "content": result.content,
                    "is_error": result.is_error,
                },
            )
            generation.tool_log.append(tool_record(call, result.content, result.is_error))
            messages.append(ChatMessage(role="tool", content=result.content, tool_call_id=call.id))
        generation.request = replace(generation.request, messages=messages)
        return await self.router.open(generation.model, generation.request)


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
