"""Generate: relay the model's answer, running tool rounds until it is done."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from vektor.answers.request import Answer
from vektor.answers.tools import Observer, ToolRunner
from vektor.llm.balancer import OpenedStream
from vektor.llm.base import Finish, ProviderError, TextDelta, ToolCall, Usage

# The upstream's finish reasons as Vektor's; `tool_calls` is set only when calls go back to
# the client (after a tool round the model goes on and finishes again).
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop"}


async def generate(
    answer: Answer, opened: OpenedStream, tools: ToolRunner, observe: Observer | None = None
) -> AsyncGenerator[TextDelta | ToolCall, None]:
    """The answer's text pieces, then any tool calls handed back to the client. Tool rounds
    report to `observe`; usage, finish reason and error land on `answer`. The upstream is
    always closed."""
    current = opened
    rounds = 0
    try:
        while True:
            mark = len(answer.parts)
            answer.use(current.deployment.key, current.deployment.config)
            calls: list[ToolCall] = []
            try:
                async for event in current.events():
                    if isinstance(event, TextDelta):
                        answer.parts.append(event.content)
                        yield event
                    elif isinstance(event, ToolCall):
                        calls.append(event)
                    elif isinstance(event, Usage):
                        answer.add_usage(event)
                    elif isinstance(event, Finish):
                        answer.finish_reason = FINISH_REASONS.get(event.reason, "stop")
            except ProviderError as exc:
                answer.fail(str(exc))
                return
            step = _next_step(answer, calls, rounds, tools.max_rounds)
            if step != "run":
                for call in calls if step == "hand_back" else ():
                    yield call
                return
            rounds += 1
            await current.aclose()
            text = "".join(answer.parts[mark:])
            current = await tools.run_round(answer, calls, text, observe)
    finally:
        await current.aclose()


def _next_step(answer: Answer, calls: list[ToolCall], rounds: int, max_rounds: int) -> str:
    """After a round of the model: `done`, `run` its tool calls, or `hand_back` them to the
    client. Vektor runs a round when every call is to one of its MCP tools (or the client has
    no tools of its own to take them), up to `max_rounds`."""
    if not calls:
        return "done"
    ours = not answer.hands_back_tools or all(c.name in answer.mcp_tools for c in calls)
    if ours and rounds < max_rounds:
        return "run"
    if ours and not answer.hands_back_tools:
        answer.finish_reason = "tool_limit"
        return "done"
    answer.tool_calls.extend(calls)
    answer.finish_reason = "tool_calls"
    return "hand_back"
