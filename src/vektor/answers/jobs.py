"""Answers as jobs of their own, for the transports that resume (SSE, and any later one
that reads the event log): a job outlives the request that started it.

A job relays the answer into the `EventLog`, stores it in its own short transaction before
publishing `done`, and can be cancelled at once.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import aclosing
from dataclasses import dataclass

from loguru import logger

from vektor.answers.event_log import EventLog
from vektor.answers.generate import generate
from vektor.answers.request import Answer, AnswerRequest
from vektor.answers.service import Pipeline, finish_answer, open_answer
from vektor.core.errors import AppError
from vektor.llm.balancer import OpenedStream
from vektor.llm.base import ProviderError, TextDelta


@dataclass(slots=True)
class Job:
    """A running answer's task, and why it was stopped."""

    answer: Answer
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    finishing: bool = False


class AnswerJobs:
    """Runs answers in the background, publishing their events; cancels them."""

    def __init__(self, pipeline: Pipeline, log: EventLog) -> None:
        self.pipeline = pipeline
        self.log = log
        self.running: dict[uuid.UUID, Job] = {}

    async def open(self, request: AnswerRequest) -> tuple[Answer, OpenedStream]:
        """`open_answer` for a job: its stream is announced to every instance (when there
        are others) while the deployment is asked, so `start` need not wait for that."""
        return await open_answer(self.pipeline, request, self.log if self.log.announces else None)

    async def start(self, answer: Answer, opened: OpenedStream) -> None:
        """Open the answer's event log and run it; `start` is its first event. Returns when
        every instance can find the answer, so that its id, once told, can be resumed or
        cancelled anywhere."""
        self.log.create(answer.id, answer.user_id)
        start: dict[str, object] = {
            "type": "start",
            "conversation_id": str(answer.conversation_id),
            "message_id": str(answer.id),
            "model": answer.model,
        }
        if answer.cached:
            start["cached"] = True
        self.log.publish(answer.id, start)
        job = self.running[answer.id] = Job(answer)
        job.task = asyncio.create_task(self._run(job, opened), name=f"answer-{answer.id}")
        # The job's first step publishes the first piece, which has already arrived: run it
        # now, so that a reader's first batch holds it with `start` (one write, not two).
        await asyncio.sleep(0)
        await self.log.shared(answer.id)

    def cancel(self, message_id: uuid.UUID, reason: str = "cancelled") -> bool:
        """Stop a running answer now; False if it is not running here."""
        job = self.running.get(message_id)
        if job is None or job.task is None or job.task.done():
            return False
        if job.cancel_reason is None and not job.finishing:
            # Once: a second cancel must not interrupt the storing of the partial answer.
            job.cancel_reason = reason
            # From the loop's queue, behind the task's first step: a task cancelled before
            # that step never runs its body, so the answer would be neither stored nor ended.
            asyncio.get_running_loop().call_soon(_cancel_unless_finishing, job)
        return True

    def active(self) -> int:
        """Answers running in this process."""
        return len(self.running)

    async def drain(self, grace_s: float) -> None:
        """Let running answers finish for up to `grace_s`, then stop the rest: their partial
        answers are stored and their streams end with `done` (`cancelled`)."""
        tasks = [job.task for job in self.running.values() if job.task is not None]
        if tasks:
            logger.info(
                "shutting down: {} answers in progress, {} s to finish", len(tasks), grace_s
            )
            await asyncio.wait(tasks, timeout=grace_s)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Cancel every answer and wait until their partial answers are stored."""
        tasks = [job.task for job in self.running.values() if job.task is not None]
        for message_id in list(self.running):
            self.cancel(message_id, "shutdown")
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: Job, opened: OpenedStream) -> None:
        answer = job.answer
        try:
            await self._relay(answer, opened)
        except asyncio.CancelledError:
            if job.cancel_reason is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            answer.finish_reason = "cancelled"
        except (ProviderError, AppError) as exc:
            answer.fail(str(exc))
        except Exception as exc:  # an upstream that breaks the protocol: end the answer cleanly
            logger.exception("answer {} failed", answer.id)
            answer.fail(f"upstream failure: {type(exc).__name__}")
        finally:
            job.finishing = True
        try:
            await asyncio.shield(self._finish(answer))
        finally:
            self.log.close(answer.id)
            self.running.pop(answer.id, None)

    async def _relay(self, answer: Answer, opened: OpenedStream) -> None:
        """Publish each piece of text as a `delta` event, tool rounds as theirs."""
        publish, message_id = self.log.publish, answer.id

        def observe(event: dict[str, object]) -> None:
            publish(message_id, event)

        events = generate(answer, opened, self.pipeline.tools, observe)
        async with aclosing(events):
            async for event in events:
                if isinstance(event, TextDelta):
                    publish(message_id, {"type": "delta", "content": event.content})

    async def _finish(self, answer: Answer) -> None:
        """Store the answer, then publish error, usage and done."""
        stored = await finish_answer(self.pipeline, answer)
        self.running.pop(answer.id, None)
        publish, message_id = self.log.publish, answer.id
        if answer.error is not None:
            publish(
                message_id, {"type": "error", "code": "upstream_error", "message": answer.error}
            )
        elif not stored:
            message = "The answer could not be stored"
            publish(message_id, {"type": "error", "code": "storage_error", "message": message})
        usage = answer.usage()
        publish(
            message_id,
            {
                "type": "usage",
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        )
        publish(message_id, {"type": "done", "finish_reason": answer.finish_reason})
        self.log.close(message_id)
        logger.info(
            "answer {} finished: {} ({} chars)", message_id, answer.finish_reason, len(answer.text)
        )


def _cancel_unless_finishing(job: Job) -> None:
    if job.task is not None and not job.task.done() and not job.finishing:
        job.task.cancel()
