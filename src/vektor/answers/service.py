"""The answer pipeline: prepare → admit → route, then generate, then store → publish.

`open_answer` runs every step that can refuse a request (422, 404, 429, 503) before the
transport sends anything; `generate.generate` relays the answer; `finish_answer` frees the
user's slot, counts the tokens and stores the answer. Every transport calls these three.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from vektor.answers.accounting import usage_row
from vektor.answers.admission import Slot, StreamSlots
from vektor.answers.event_log import EventLog
from vektor.answers.prepare import Plan, prepare
from vektor.answers.request import Answer, AnswerRequest
from vektor.answers.response_cache import AnswerCache
from vektor.answers.store import AnswerStore, StoredQuestion
from vektor.answers.tools import ToolRunner
from vektor.auth.live_cache import LivePools
from vektor.core.config import Settings
from vektor.core.database import new_id
from vektor.core.metrics import stream_ended, stream_started
from vektor.llm.balancer import ModelBalancer, OpenedStream
from vektor.llm.base import GenerationRequest
from vektor.usage.quota import Quotas

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pipeline:
    """What answering needs from the app, built once in its lifespan."""

    settings: Settings
    balancer: ModelBalancer
    slots: StreamSlots
    store: AnswerStore
    tools: ToolRunner
    quotas: Quotas
    cache: AnswerCache
    pools: LivePools  # the MCP pools each user may use


async def open_answer(
    pipeline: Pipeline, request: AnswerRequest, log: EventLog | None = None
) -> tuple[Answer, OpenedStream]:
    """Check and admit the request (limits, quotas, a stream slot), store the question, and
    open a deployment whose first event has arrived. The caller must `finish_answer` the
    answer it gets. A transport that publishes the answer to `log` has its stream
    announced meanwhile."""
    registry = pipeline.tools.registry
    offers_tools = request.mcp_tools and bool(registry.pools)
    pools = await pipeline.pools.allowed(request.user_id) if offers_tools else None
    plan = prepare(
        request,
        settings=pipeline.settings,
        balancer=pipeline.balancer,
        registry=registry,
        pools=pools,
    )
    await pipeline.quotas.check(request.user_id, request.api_key_id)
    slot = await pipeline.slots.take(request.user_id)
    try:
        answer, opened = await _route(pipeline, request, plan, slot, log)
    except BaseException:
        await pipeline.slots.release(slot)
        raise
    stream_started()
    return answer, opened


async def _route(
    pipeline: Pipeline, request: AnswerRequest, plan: Plan, slot: Slot, log: EventLog | None
) -> tuple[Answer, OpenedStream]:
    """Store the question (if asked) and open a deployment; the answer to relay."""
    answer_id = new_id()
    opening = _store_and_open(pipeline, request, plan)
    if log is not None:
        opening = _announcing(log, answer_id, request.user_id, opening)
    stored, generation, (opened, cached) = await opening
    answer = Answer(
        id=answer_id,
        user_id=request.user_id,
        model=request.model,
        source=request.source,
        request=generation,
        conversation_id=stored.conversation_id if stored else None,
        mcp_tools=plan.mcp_tools,
        hands_back_tools=request.hands_back_tools,
        prompt_chars=sum(len(m.content) for m in generation.messages),
        slot=slot,
        api_key_id=request.api_key_id,
        cached=cached,
    )
    answer.use(opened.deployment.key, opened.deployment.config)
    return answer, opened


async def _announcing(
    log: EventLog, answer_id: uuid.UUID, owner: uuid.UUID, opening: Awaitable[T]
) -> T:
    """`opening`, the answer's stream announced to every instance meanwhile; withdrawn if
    the answer does not start."""
    announced = asyncio.ensure_future(log.announce(answer_id, owner))
    try:
        result = await opening
    except BaseException:
        await asyncio.gather(announced, return_exceptions=True)
        await log.withdraw(answer_id)
        raise
    await announced
    return result


async def _store_and_open(
    pipeline: Pipeline, request: AnswerRequest, plan: Plan
) -> tuple[StoredQuestion | None, GenerationRequest, tuple[OpenedStream, bool]]:
    """The stored question, what the deployment is sent, and the opened stream. A failure
    of either step undoes the other, so that a retry starts clean. A new conversation's
    context is the request itself, so its question is stored while the deployment is asked;
    a continued one's context needs the stored history first."""
    window = pipeline.balancer.context_window(request.model)
    if request.store and request.conversation_id is not None:
        stored = await pipeline.store.question(request)
        generation = plan.generation_request(request, stored.context, window)
        opening = pipeline.cache.open(request, generation)
        return stored, generation, await _opened_or_undone(pipeline.store, stored, opening)
    generation = plan.generation_request(request, list(request.messages), window)
    if not request.store:
        return None, generation, await pipeline.cache.open(request, generation)
    stored, opened = await _store_while_opening(pipeline, request, generation)
    return stored, generation, opened


async def _store_while_opening(
    pipeline: Pipeline, request: AnswerRequest, generation: GenerationRequest
) -> tuple[StoredQuestion, tuple[OpenedStream, bool]]:
    """The question stored while a deployment is opened: its transaction adds nothing to the
    time to the first token. A question that cannot be stored fails the request at once,
    the deployment's request cancelled (or closed, had it opened); a deployment that cannot
    be opened undoes the stored question."""
    opening = asyncio.ensure_future(pipeline.cache.open(request, generation))
    try:
        # The deployment's request goes out first (its first step sends it); the question's
        # statement is built and run while the upstream thinks.
        await asyncio.sleep(0)
        stored = await pipeline.store.question(request)
    except BaseException:
        opening.cancel()
        (result,) = await asyncio.gather(opening, return_exceptions=True)
        if isinstance(result, tuple):  # it had opened before the cancel
            await result[0].aclose()
        raise
    return stored, await _opened_or_undone(pipeline.store, stored, opening)


async def _opened_or_undone(
    store: AnswerStore, stored: StoredQuestion, opening: Awaitable[tuple[OpenedStream, bool]]
) -> tuple[OpenedStream, bool]:
    """The opened stream; if no deployment could be opened, the stored question is undone
    first, so that a retry starts clean."""
    try:
        return await opening
    except BaseException:
        await store.undo(stored)
        raise


async def finish_answer(pipeline: Pipeline, answer: Answer) -> bool:
    """Count the tokens, write the usage row and store the answer (when its question was
    stored: in one transaction), and free the user's slot, before the transport sends its
    last event: a client that starts its next answer on `done` is never turned away by its
    own, and the row is committed before the client sees the end. Whether the answer was
    stored; only the first call does anything."""
    if answer.finished:
        return False
    answer.finished = True
    usage = answer.usage()
    row = usage_row(answer, usage)
    stored = False
    try:
        if answer.conversation_id is None:
            await pipeline.store.usage(answer, row)
        else:
            stored = await pipeline.store.answer(answer, usage, row)
    finally:
        # Started together, so that with Redis the change-feed entry and the slot's release
        # go out in one pipeline.
        announced = [pipeline.store.announce(answer, usage)] if stored else []
        await asyncio.gather(
            pipeline.quotas.add(row), pipeline.slots.release(answer.slot), *announced
        )
        stream_ended()
    return stored
