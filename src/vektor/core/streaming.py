"""A streamed response that watches for the client leaving with one plain asyncio task."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PING = b": ping\n\n"  # an SSE comment: keeps an idle connection open


class LastChunk(bytes):
    """The last piece of a streamed body: it goes out with the end of the response, in one
    write, instead of being followed by an empty closing chunk. Nothing may follow it."""


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` by default; the body is sent from the request's own task.

    Under ASGI 2.3, which Uvicorn speaks, Starlette streams every response inside an anyio
    task group: a cancel scope, the body in a second task and a wrapper around each, about
    3 % of the CPU of a streamed chat answer. Here one watcher
    task waits for `http.disconnect` and cancels the request's task, as Starlette's does;
    the body's iterator is then closed at once (its `finally` runs), and the background task,
    if any, runs either way.
    """

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        if scope["type"] != "http" or task is None:
            await super().__call__(scope, receive, send)
            return
        state = {"streaming": True, "left": False}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if state["streaming"]:
                state["left"] = True
                task.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not state["left"]:
                raise
            task.uncancel()
        finally:
            state["streaming"] = False
            watcher.cancel()
        if state["left"]:
            close: Any = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()
        if self.background is not None:
            await self.background()

    async def stream_response(self, send: Send) -> None:
        """Starlette's, except that a `LastChunk` ends the response itself."""
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        ended = False
        async for chunk in self.body_iterator:
            if ended:
                raise RuntimeError("a streamed body went on after its LastChunk")
            if not isinstance(chunk, bytes | memoryview):
                chunk = chunk.encode(self.charset)
            ended = isinstance(chunk, LastChunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
