"""Server-sent events out of a EventLog subscription, with heartbeats."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

from vektor.answers.event_log import EventLog
from vektor.core.streaming import PING, SSE_HEADERS, EventStreamResponse, LastChunk


def sse_response(
    streams: EventLog,
    message_id: uuid.UUID,
    *,
    after: int,
    ping_s: float,
    on_disconnect: Callable[[], object] | None = None,
) -> EventStreamResponse:
    """Replay events after `after`, follow live ones, end after `done`."""

    async def body() -> AsyncIterator[bytes]:
        finished = False
        try:
            async with aclosing(streams.subscribe(message_id, after, ping_s)) as subscription:
                async for batch in subscription:
                    if batch is None:
                        yield PING
                        continue
                    frames = b"".join(event.frame for event in batch)
                    if batch[-1].data["type"] == "done":  # always the last event
                        finished = True
                        yield LastChunk(frames)  # the response ends with it, in one write
                        return
                    yield frames
            finished = True
        finally:
            if not finished and on_disconnect is not None:
                on_disconnect()

    return EventStreamResponse(body(), headers=SSE_HEADERS)
