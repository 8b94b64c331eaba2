"""Generations as jobs of their own: they outlive the HTTP request that started them.

A job reads the upstream stream, publishes events to the StreamStore, stores the answer
in its own short transaction before publishing `done`, and can be cancelled at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from sqlalchemy.exc import SQLAlchemyError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from vektor.chat.streams import StreamStore
from vektor.chat.tools import ToolRunner, tool_message_content
from vektor.chat.writes import ChatWrites, NewMessage
from vektor.core.database import is_database_down, new_id
from vektor.core.errors import AppError
from vektor.core.events import EventBus
from vektor.llm.balancer import OpenedStream
from vektor.llm.base import (
    Finish,
    GenerationRequest,
    ProviderError,
    TextDelta,
    ToolCall,
    Usage,
)
from vektor.monitoring.metrics import count_tokens, stream_ended, stream_started

# How long a finished answer keeps trying to reach a database that is down.
STORE_RETRY_SECONDS = 15.0

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "stop",
    "cancelled": "cancelled",
    "tool_limit": "tool_limit",
}


@dataclass
class Generation:
    """A running answer."""

    message_id: uuid.UUID
    user_id: uuid.UUID
    conversation_id: uuid.UUID
    model: str
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    finishing: bool = False
    parts: list[str] = field(default_factory=list)
    request: GenerationRequest | None = None  # the model's context, grown by tool rounds
    tool_log: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Outcome:
    finish_reason: str = "stop"
    usage: Usage | None = None
    error: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


class GenerationManager:
    """Runs generations, counts them per user, cancels them."""

    def __init__(
        self,
        writes: ChatWrites,
        streams: StreamStore,
        events: EventBus,
        tools: ToolRunner | None = None,
        on_finished: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.writes = writes
        self.streams = streams
        self.events = events
        self.tools = tools
        self.on_finished = on_finished  # e.g. the adapters' notifier
        self.running: dict[uuid.UUID, Generation] = {}
        self.reserved: Counter[uuid.UUID] = Counter()

    def reserve(self, user_id: uuid.UUID, limit: int) -> bool:
        """Take one of the user's stream slots, if one is free (no await: no race)."""
        if self.reserved[user_id] >= limit:
            return False
        self.reserved[user_id] += 1
        return True

    def release(self, user_id: uuid.UUID) -> None:
        """Give a slot back."""
        self.reserved[user_id] -= 1
        if self.reserved[user_id] <= 0:
            del self.reserved[user_id]

    def active_streams(self) -> int:
        """Generations running in this process."""
        return len(self.running)

    def start(self, generation: Generation, opened: OpenedStream, prompt_chars: int) -> None:
        """Run the generation in the background; its slot is released when it ends."""
        self.streams.create(generation.message_id, generation.user_id)
        self.streams.publish(
            generation.message_id,
            {
                "type": "start",
                "conversation_id": str(generation.conversation_id),
                "message_id": str(generation.message_id),
                "model": generation.model,
            },
        )
        self.running[generation.message_id] = generation
        stream_started()
        generation.task = asyncio.create_task(
            self._run(generation, opened, prompt_chars), name=f"generation-{generation.message_id}"
        )

    def cancel(self, message_id: uuid.UUID, reason: str = "cancelled") -> bool:
        """Stop a running generation now; False if it is not running here."""
        generation = self.running.get(message_id)
        if generation is None or generation.task is None or generation.task.done():
            return False
        if generation.cancel_reason is None and not generation.finishing:
            # Once: a second cancel must not interrupt the storing of the partial answer.
            generation.cancel_reason = reason
            generation.task.cancel()
        return True

    async def drain(self, grace_s: float) -> None:
        """Let running answers finish for up to `grace_s`, then stop the rest: their partial
        answers are stored and their streams end with `done` (`cancelled`)."""
        tasks = [g.task for g in self.running.values() if g.task is not None]
        if tasks:
            logger.info(
                "shutting down: {} answers in progress, {} s to finish", len(tasks), grace_s
            )
            await asyncio.wait(tasks, timeout=grace_s)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Cancel every generation and wait until their partial answers are stored."""
        tasks = [g.task for g in self.running.values() if g.task is not None]
        for message_id in list(self.running):
            self.cancel(message_id, "shutdown")
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, generation: Generation, opened: OpenedStream, prompt_chars: int) -> None:
        outcome = _Outcome()
        current = {"stream": opened}
        try:
            await self._rounds(generation, current, outcome)
        except asyncio.CancelledError:
            if generation.cancel_reason is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            outcome.finish_reason = "cancelled"
        except (ProviderError, AppError) as exc:
            outcome.finish_reason, outcome.error = "error", str(exc)
        except Exception as exc:  # an upstream that breaks the protocol: end the answer cleanly
            logger.exception("generation {} failed", generation.message_id)
            outcome.finish_reason, outcome.error = (
                "error",
                f"upstream failure: {type(exc).__name__}",
            )
        finally:
            generation.finishing = True
            try:
                await current["stream"].aclose()
            except Exception:  # closing a broken upstream connection may fail too
                logger.warning("could not close the upstream of {}", generation.message_id)
        try:
            await asyncio.shield(self._finish(generation, outcome, prompt_chars))
        finally:
            self.streams.close(generation.message_id)
            self._retire(generation)

    def _retire(self, generation: Generation) -> None:
        """Free the user's slot, once: before `done` goes out, so that a client that starts
        its next answer on `done` is never turned away by its own finished one."""
        if self.running.pop(generation.message_id, None) is not None:
            self.release(generation.user_id)
            stream_ended()

    async def _rounds(
        self, generation: Generation, current: dict[str, OpenedStream], outcome: _Outcome
    ) -> None:
        """Relay the answer; when the model asks for tools, run them and let it go on."""
        rounds = 0
        while True:
            mark = len(generation.parts)
            await self._consume(generation, current["stream"], outcome)
            if not outcome.tool_calls or self.tools is None:
                return
            if rounds >= self.tools.max_rounds:
                outcome.finish_reason = "tool_limit"
                return
            rounds += 1
            await current["stream"].aclose()
            text = "".join(generation.parts[mark:])
            current["stream"] = await self.tools.run_round(
                generation, outcome.tool_calls, text, self.streams
            )

    async def _consume(
        self, generation: Generation, opened: OpenedStream, outcome: _Outcome
    ) -> None:
        publish = self.streams.publish
        outcome.tool_calls = []
        async for event in opened.events():
            if isinstance(event, TextDelta):
                generation.parts.append(event.content)
                publish(generation.message_id, {"type": "delta", "content": event.content})
            elif isinstance(event, Usage):
                outcome.usage = event
            elif isinstance(event, Finish):
                outcome.finish_reason = FINISH_REASONS.get(event.reason, "stop")
            elif isinstance(event, ToolCall):
                outcome.tool_calls.append(event)

    async def _finish(self, generation: Generation, outcome: _Outcome, prompt_chars: int) -> None:
        """Store the answer, then publish error, usage and done."""
        content = "".join(generation.parts)
        usage = outcome.usage or Usage(
            prompt_tokens=max(1, prompt_chars // 4), completion_tokens=len(generation.parts)
        )
        count_tokens(generation.model, usage.prompt_tokens, usage.completion_tokens)
        stored = await self._store(generation, content, outcome.finish_reason, usage)
        if stored and self.on_finished is not None:
            self.on_finished(
                "conversation.finished",
                {
                    "conversation_id": str(generation.conversation_id),
                    "message_id": str(generation.message_id),
                    "user_id": str(generation.user_id),
                    "model": generation.model,
                    "finish_reason": outcome.finish_reason,
                    "completion_tokens": usage.completion_tokens,
                },
            )
        self._retire(generation)
        publish = self.streams.publish
        if outcome.error is not None:
            publish(
                generation.message_id,
                {"type": "error", "code": "upstream_error", "message": outcome.error},
            )
        elif not stored:
            publish(
                generation.message_id,
                {
                    "type": "error",
                    "code": "storage_error",
                    "message": "The answer could not be stored",
                },
            )
        publish(
            generation.message_id,
            {
                "type": "usage",
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        )
        publish(generation.message_id, {"type": "done", "finish_reason": outcome.finish_reason})
        self.streams.close(generation.message_id)
        logger.info(
            "generation {} finished: {} ({} chars)",
            generation.message_id,
            outcome.finish_reason,
            len(content),
        )

    @staticmethod
    async def _store_when_back(
        message_id: uuid.UUID, write: Callable[[], Awaitable[bool]], first: BaseException
    ) -> bool:
        """A database restart should not cost the answer: retry an outage for a while."""
        logger.warning("storing answer {} failed, retrying: {}", message_id, first)
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_database_down),
            stop=stop_after_delay(STORE_RETRY_SECONDS),
            wait=wait_exponential(multiplier=0.1, max=2),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await write()
        return False  # pragma: no cover - the loop returns or raises

    async def _store(
        self, generation: Generation, content: str, finish_reason: str, usage: Usage
    ) -> bool:
        now = datetime.now(UTC)
        messages = [
            NewMessage(id=new_id(), role="tool", content=tool_message_content(record))
            for record in generation.tool_log
        ]
        messages.append(
            NewMessage(
                id=generation.message_id,
                role="assistant",
                content=content,
                model=generation.model,
                finish_reason=finish_reason,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
        )

        async def write() -> bool:
            return await self.writes.add_answer(
                conversation_id=generation.conversation_id,
                user_id=generation.user_id,
                messages=messages,
                at=now,
            )

        try:
            try:
                stored = await write()
            except (SQLAlchemyError, OSError) as exc:
                if not is_database_down(exc):
                    raise
                stored = await self._store_when_back(generation.message_id, write, exc)
        except (SQLAlchemyError, OSError) as exc:
            logger.error("could not store answer {}: {}", generation.message_id, exc)
            return False
        if not stored:
            return False  # the conversation was deleted while the answer was written
        await self.events.publish(
            generation.user_id, "conversation.updated", generation.conversation_id
        )
        return True
