"""Server-sent events out of a StreamStore subscription, with heartbeats."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

from starlette.responses import StreamingResponse

from vektor.chat.streams import StreamStore

PING = b": ping\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_response(
    streams: StreamStore,
    message_id: uuid.UUID,
    *,
    after: int,
    ping_s: float,
    on_disconnect: Callable[[], object] | None = None,
) -> StreamingResponse:
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

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)
