"""What one /chat/ws socket has yet to send: frames in order, bounded in bytes.

An answer's events wait for room (`put_waiting`): a burst, such as the replay of a long
answer on `resume`, goes out as fast as the client takes it. A client that takes nothing
for `stall_s` while the buffer is full reads too slowly, and so does one whose small
frames (pongs, errors, change-feed events: `put`) overflow it: either way `overflow` is
called once (the socket closes with 1008) and what was queued is dropped. The answers
themselves are jobs that go on, stored and resumable.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable


class Outbox:
    """Frames waiting for the client, about `limit` bytes at most; `run` writes them."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        *,
        limit: int,
        stall_s: float,
        overflow: Callable[[], object],
    ) -> None:
        self.send, self.limit, self.stall_s, self.overflow = send, limit, stall_s, overflow
        self.frames: deque[bytes] = deque()
        self.queued = 0
        self.full = False
        self.ready = asyncio.Event()  # something to send
        self.room = asyncio.Event()  # under half the limit again
        self.room.set()

    def _fits(self, frame: bytes) -> bool:
        # A frame larger than the whole limit still goes, alone.
        return self.queued == 0 or self.queued + len(frame) <= self.limit

    def put(self, frame: bytes) -> None:
        """Queue a frame now; past the limit, the client is too slow."""
        if not self.full and not self.offer(frame):
            self._overflow()

    def offer(self, frame: bytes) -> bool:
        """Queue a frame if it fits now (no coroutine per event on the common path)."""
        if self.full or not self._fits(frame):
            return False
        self.frames.append(frame)
        self.queued += len(frame)
        self.ready.set()
        return True

    async def put_waiting(self, frame: bytes) -> None:
        """Queue a frame, waiting for room up to `stall_s` while the buffer is full."""
        while not self.full and not self._fits(frame):
            self.room.clear()
            try:
                async with asyncio.timeout(self.stall_s):
                    await self.room.wait()
            except TimeoutError:
                self._overflow()
        self.put(frame)

    def _overflow(self) -> None:
        self.full = True
        self.frames.clear()
        self.queued = 0
        self.room.set()  # wake every waiting producer: they drop their frames
        self.overflow()

    async def run(self) -> None:
        """Write queued frames as the client takes them (each `send` waits for the socket)."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.frames:
                frame = self.frames.popleft()
                await self.send(frame.decode())
                self.queued -= len(frame)
                if self.queued <= self.limit // 2:
                    self.room.set()
