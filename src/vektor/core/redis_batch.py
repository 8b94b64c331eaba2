"""Redis commands of concurrent requests sent together: one pipeline per event-loop turn.

With redis-py a command sent on its own costs several times the CPU of the same command in
a pipeline (taking a connection from the pool, the retry wrapper, one read per reply). The
answers of many users are in flight at once, and each sends a few single commands (its
stream slot, its change-feed entries): `CommandBatch` gathers the commands issued in one
turn of the event loop and sends them as one pipeline (not a transaction), each caller
awaiting its own reply. A command's error goes to its caller alone; a connection failure to
every caller of that pipeline, as it would have to each of them alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from vektor.core.waiters import fail_waiters

Waiting = list[tuple[tuple[Any, ...], asyncio.Future[Any]]]


class CommandBatch:
    """Sends the commands of one event-loop turn as one pipeline."""

    def __init__(self, redis: Redis) -> None:
        self.redis: Any = redis
        self._waiting: Waiting = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, *command: Any) -> Any:
        """Send `command` (name and arguments) with the others of this turn; its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send)
        self._waiting.append((command, future))
        return await future

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, []
        task = asyncio.create_task(self._execute(waiting))
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, waiting: Waiting) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for command, _ in waiting:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            fail_waiters((future for _, future in waiting), exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(waiting, replies, strict=True):
            if future.done():
                continue  # its caller stopped waiting
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
