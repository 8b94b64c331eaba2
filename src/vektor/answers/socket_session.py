"""One signed-in /chat/ws socket: its frames, the answers it follows, its change feed.

The answers themselves are `AnswerJobs` jobs, as over SSE: they run, publish to the event
log and are stored whatever happens to the socket. The socket only reads the log (one task
per answer it follows) into its bounded outgoing queue (`socket_outbox.Outbox`); a client
that reads too slowly is closed with 1008, its answers going on.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from loguru import logger
from starlette.websockets import WebSocket, WebSocketDisconnect

from vektor.answers.router import answer_request
from vektor.answers.socket_frames import (
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    PONG,
    CancelFrame,
    ChatFrame,
    EventTags,
    FrameError,
    ResumeFrame,
    SubscribeFrame,
    parse_frame,
    refused,
    sync_frame,
)
from vektor.answers.socket_outbox import Outbox
from vektor.core.config import WS_MAX_FRAME_BYTES

if TYPE_CHECKING:
    from vektor.state import AppState

MAX_OPENING = 64  # chat frames of one socket waiting for their answer to start
MAX_FOLLOWED = 64  # answers one socket follows at once
CLOSE_TIMEOUT_S = 5.0  # a client that reads nothing never acknowledges the close
CLOSE_INTERNAL = 1011


class SocketSession:
    """The frames of one signed-in socket, until it closes."""

    def __init__(
        self,
        websocket: WebSocket,
        state: AppState,
        user_id: uuid.UUID,
        api_key_id: uuid.UUID | None = None,
    ) -> None:
        self.websocket, self.state, self.user_id = websocket, state, user_id
        self.api_key_id = api_key_id  # the key the socket signed in with: its usage rows
        settings = state.settings
        self.outbox = Outbox(
            websocket.send_text,
            limit=settings.ws_send_buffer_bytes,
            stall_s=settings.ws_slow_reader_seconds,
            overflow=lambda: self.end(CLOSE_POLICY, "Client too slow: send buffer full"),
        )
        self.followed: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.opening: set[asyncio.Task[None]] = set()
        self.started_here: set[uuid.UUID] = set()
        self.feed: asyncio.Task[None] | None = None
        self.ended: asyncio.Future[tuple[int, str] | None] = (
            asyncio.get_running_loop().create_future()
        )

    def end(self, code: int | None, reason: str = "") -> None:
        """Close the socket with `code` (None: the client has gone); the first call wins."""
        if not self.ended.done():
            self.ended.set_result(None if code is None else (code, reason))

    async def run(self) -> None:
        """Send `ready`, serve the socket's frames, then close it and stop following."""
        self.outbox.put(b'{"type":"ready","user_id":"%s"}' % str(self.user_id).encode())
        writer = asyncio.create_task(self.outbox.run())
        reader = asyncio.create_task(self._read())
        waited: set[asyncio.Future[Any]] = {writer, reader, self.ended}
        try:
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if any(_failed(task) for task in (writer, reader)):
                self.end(CLOSE_INTERNAL, "Internal error")
            self.end(None)
            await self._stop(writer, reader)
        closing = self.ended.result()
        if closing is not None:
            await self._close(*closing)

    async def _stop(self, *tasks: asyncio.Task[None]) -> None:
        """Stop reading, writing and following; the answers themselves go on."""
        owned = [*tasks, *self.opening, *self.followed.values()]
        if self.feed is not None:
            owned.append(self.feed)
        for task in owned:
            task.cancel()
        for result in await asyncio.gather(*owned, return_exceptions=True):
            if isinstance(result, Exception) and not _is_disconnect(result):
                logger.opt(exception=result).error("websocket task failed")
        slow = self.outbox.full
        if self.state.settings.cancel_on_disconnect and not slow:
            for message_id in self.started_here:
                self.state.jobs.cancel(message_id)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.websocket.close(code, reason)

    async def _read(self) -> None:
        """Dispatch each frame until the client leaves."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                self.outbox.put(FrameError(400, "Frames must be JSON text").frame())
                continue
            if len(text) > WS_MAX_FRAME_BYTES // 4 and len(text.encode()) > WS_MAX_FRAME_BYTES:
                self.end(CLOSE_TOO_BIG, "Frame too big")
                return
            try:
                await self._dispatch(text)
            except FrameError as exc:
                self.outbox.put(exc.frame())

    async def _dispatch(self, text: str) -> None:
        frame = parse_frame(text)
        if isinstance(frame, ChatFrame):
            self._start_opening(frame)
        elif isinstance(frame, CancelFrame):
            await self._cancel(frame)
        elif isinstance(frame, ResumeFrame):
            await self._owned(frame.message_id, frame.request_id)
            self._follow(frame.message_id, frame.after, frame.request_id)
        elif isinstance(frame, SubscribeFrame):
            self._subscribe(frame.after)
        else:
            self.outbox.put(PONG)

    def _start_opening(self, frame: ChatFrame) -> None:
        if len(self.opening) >= MAX_OPENING:
            raise FrameError(429, "Too many answers starting on this socket", frame.request_id)
        task = asyncio.create_task(self._open(frame))
        self.opening.add(task)
        task.add_done_callback(self.opening.discard)

    async def _open(self, frame: ChatFrame) -> None:
        """Admit and start an answer as POST /chat/stream does, then follow it."""
        state, user_id = self.state, self.user_id
        try:
            limit = state.settings.rate_limit_chat
            await state.rate_limiter.hit(limit, [("chat:user", str(user_id))])
            asked = answer_request(frame, user_id, "ws", self.api_key_id)
            answer, opened = await state.jobs.open(asked)
        except Exception as exc:
            error = refused(exc, frame.request_id)
            if error is None:
                logger.exception("websocket chat frame failed")
                error = FrameError(500, "Internal server error", frame.request_id)
            self.outbox.put(error.frame())
            return
        await state.jobs.start(answer, opened)
        self.started_here.add(answer.id)
        self._follow(answer.id, 0, frame.request_id)

    async def _owned(self, message_id: uuid.UUID, request_id: str | None) -> None:
        """404 unless the answer is the caller's (unknown, expired or someone else's)."""
        if await self.state.event_log.owner(message_id) != self.user_id:
            raise FrameError(404, "Stream not found", request_id)

    async def _cancel(self, frame: CancelFrame) -> None:
        await self._owned(frame.message_id, frame.request_id)
        jobs, log = self.state.jobs, self.state.event_log
        if not jobs.cancel(frame.message_id) and not await log.cancel_elsewhere(frame.message_id):
            raise FrameError(409, "The answer has already finished", frame.request_id)

    def _follow(self, message_id: uuid.UUID, after: int, request_id: str | None) -> None:
        """Forward an answer's events after `after` (replayed, then live) to the client."""
        previous = self.followed.pop(message_id, None)
        if previous is not None:
            previous.cancel()  # a second resume of the same answer replaces the first
        elif len(self.followed) >= MAX_FOLLOWED:
            raise FrameError(429, "Too many answers followed on this socket", request_id)
        task = asyncio.create_task(
            self._forward(message_id, after, EventTags(message_id, request_id))
        )
        self.followed[message_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self.followed.get(message_id) is done:
                del self.followed[message_id]
            if _failed(done):  # the log could not be read: the client may resume later
                logger.opt(exception=done.exception()).error("answer {} not forwarded", message_id)
                error = FrameError(503, "The answer's events could not be read", request_id)
                self.outbox.put(error.frame())

        task.add_done_callback(forget)

    async def _forward(self, message_id: uuid.UUID, after: int, tags: EventTags) -> None:
        log, ping_s = self.state.event_log, self.state.settings.sse_ping_seconds
        offer, put = self.outbox.offer, self.outbox.put_waiting
        async with aclosing(log.subscribe(message_id, after, ping_s)) as subscription:
            async for batch in subscription:
                for event in batch or ():  # None: a heartbeat, which a socket does not need
                    frame = tags.frame(event)
                    if not offer(frame):
                        await put(frame)

    def _subscribe(self, after: str | None) -> None:
        """Follow the change feed (a second subscribe replaces the first)."""
        if self.feed is not None:
            self.feed.cancel()
        self.feed = asyncio.create_task(self._follow_feed(after))

    async def _follow_feed(self, after: str | None) -> None:
        ping_s = self.state.settings.sse_ping_seconds
        async for event in self.state.events.follow(self.user_id, after, ping_s):
            if event is not None:
                self.outbox.put(sync_frame(event))


def _is_disconnect(exc: BaseException) -> bool:
    """A send to a client that has gone: the socket's normal end, not a failure."""
    return isinstance(exc, WebSocketDisconnect | OSError)


def _failed(task: asyncio.Task[None]) -> bool:
    """Whether a task ended with an error other than the client leaving."""
    if not task.done() or task.cancelled():
        return False
    exc = task.exception()
    return exc is not None and not _is_disconnect(exc)
