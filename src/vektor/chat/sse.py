"""Server-sent events out of a StreamStore subscription, with heartbeats."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

from vektor.chat.streams import StreamStore
from vektor.core.streaming import PING, SSE_HEADERS, EventStreamResponse


def sse_response(
    streams: StreamStore,
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
            async for batch in streams.subscribe(message_id, after, ping_s):
                if batch is None:
                    yield PING
                    continue
                yield b"".join(event.frame for event in batch)
            finished = True
        finally:
            if not finished and on_disconnect is not None:
                on_disconnect()

    return EventStreamResponse(body(), headers=SSE_HEADERS)
