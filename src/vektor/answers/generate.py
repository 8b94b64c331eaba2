"""Generate: relay the model's answer, running tool rounds until it is done, and carrying an
answer over to another deployment when one dies in the middle of it."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from vektor.answers.request import Answer
from vektor.answers.tools import Observer, ToolRunner
from vektor.llm.balancer import ModelBalancer, OpenedStream
from vektor.llm.base import Finish, ProviderError, ProviderEvent, TextDelta, ToolCall, Usage
from vektor.llm.continuation import OverlapTrimmer, overlap_trimmer

# The upstream's finish reasons as Vektor's; `tool_calls` is set only when calls go back to
# the client (after a tool round the model goes on and finishes again).
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop"}


async def generate(
    answer: Answer, opened: OpenedStream, tools: ToolRunner, observe: Observer | None = None
) -> AsyncGenerator[TextDelta | ToolCall, None]:
    """The answer's text pieces, then any tool calls handed back to the client. Tool rounds
    and failovers report to `observe`; usage, finish reason and error land on `answer`. The
    upstream is always closed."""
    current = opened
    rounds = 0
    try:
        while True:
            answer.use(current.deployment.key, current.deployment.config)
            round_ = _Round(answer, current, tools.balancer, observe)
            try:
                async for piece in round_.pieces():
                    yield piece
            finally:
                current = round_.current
            if answer.error is not None:
                return
            step = _next_step(answer, round_.calls, rounds, tools.max_rounds)
            if step != "run":
                for call in round_.calls if step == "hand_back" else ():
                    yield call
                return
            rounds += 1
            await current.aclose()
            current = await tools.run_round(answer, round_.calls, round_.text, observe)
    finally:
        await current.aclose()


class _Round:
    """One round of the model (up to its tool calls or its end), on as many deployments as it
    takes: when one dies after text has flowed, the next continues the text, its overlap
    with what was already sent trimmed."""

    def __init__(
        self,
        answer: Answer,
        opened: OpenedStream,
        balancer: ModelBalancer,
        observe: Observer | None,
    ) -> None:
        self.answer = answer
        self.current = opened
        self.balancer = balancer
        self.observe = observe
        self.mark = len(answer.parts)
        self.calls: list[ToolCall] = []
        self.trimmer: OverlapTrimmer | None = None
        self.reported = False  # the current attempt reported its token counts

    @property
    def text(self) -> str:
        """The round's text so far."""
        return "".join(self.answer.parts[self.mark :])

    async def pieces(self) -> AsyncGenerator[TextDelta, None]:
        """The round's text, whichever deployment writes it."""
        while True:
            begun, self.reported = len(self.answer.parts), False
            try:
                async for event in self.current.events():
                    text = self._absorb(event)
                    if text:
                        self.answer.parts.append(text)
                        yield TextDelta(text)
            except ProviderError as exc:
                if not await self._take_over(exc, begun):
                    self.answer.fail(str(exc))
                    return
                continue
            rest = self.trimmer.end() if self.trimmer is not None else ""
            if rest:
                self.answer.parts.append(rest)
                yield TextDelta(rest)
            if self.trimmer is not None and not self.reported:
                self._estimate(begun)
            return

    def _absorb(self, event: ProviderEvent) -> str:
        """Note one event of the upstream; the text to send on, if any."""
        if isinstance(event, TextDelta):
            return event.content if self.trimmer is None else self.trimmer.feed(event.content)
        if isinstance(event, ToolCall):
            self.calls.append(event)
        elif isinstance(event, Usage):
            self.reported = True
            self.answer.add_usage(event)
        elif isinstance(event, Finish):
            self.answer.finish_reason = FINISH_REASONS.get(event.reason, "stop")
        return ""

    async def _take_over(self, error: ProviderError, begun: int) -> bool:
        """Move the round to another deployment of the model, with what it has written so
        far to continue; False when none can (or the error is not one to fail over from).
        Tool calls the dead deployment announced were not run: the next one decides anew."""
        if not error.retryable:
            return False
        failed, partial = self.current, self.text
        await failed.aclose()
        opened = await self.balancer.take_over(
            self.answer.model, self.answer.request, partial, failed, str(error)
        )
        if opened is None:
            return False
        if not self.reported:
            self._estimate(begun)
        self.calls.clear()
        self.current = opened
        self.answer.use(opened.deployment.key, opened.deployment.config)
        self.trimmer = overlap_trimmer(partial, prefill=opened.deployment.prefills)
        if self.observe is not None:
            self.observe(
                {
                    "type": "failover",
                    "from": failed.deployment.key,
                    "to": opened.deployment.key,
                    "at_chars": len(self.answer.text),
                }
            )
        return True

    def _estimate(self, begun: int) -> None:
        """Count an attempt that reported no tokens: its prompt (the context plus the
        round's text before it) and the text it wrote."""
        context = sum(len(m.content) for m in self.answer.request.messages)
        before = sum(len(p) for p in self.answer.parts[self.mark : begun])
        wrote = sum(len(p) for p in self.answer.parts[begun:])
        self.answer.add_estimate(context + before, wrote)


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
