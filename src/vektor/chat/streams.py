"""The events of each generation, kept so that a client can resume with Last-Event-ID.

`StreamStore` is the interface; `MemoryStreamStore` keeps them in this process. A finished
stream stays readable for `retention_s` seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One SSE event: an increasing id and a JSON object with a `type`."""

    id: int
    data: dict[str, Any]


class StreamStore(Protocol):
    """Where generations publish and clients subscribe."""

    def create(self, message_id: uuid.UUID, owner: uuid.UUID) -> None:
        """Open a stream."""
        ...

    def publish(self, message_id: uuid.UUID, data: dict[str, Any]) -> int:
        """Append an event; returns its id."""
        ...

    def close(self, message_id: uuid.UUID) -> None:
        """Mark the stream finished (no more events)."""
        ...

    def owner(self, message_id: uuid.UUID) -> uuid.UUID | None:
        """Whose stream it is, or None if unknown or expired."""
        ...

    def subscribe(
        self, message_id: uuid.UUID, after: int, ping_s: float
    ) -> AsyncIterator[StreamEvent | None]:
        """Events after `after`, then live ones; None when idle for `ping_s` (a heartbeat)."""
        ...


@dataclass
class _Log:
    owner: uuid.UUID
    events: list[StreamEvent] = field(default_factory=list)
    finished_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class MemoryStreamStore:
    """Streams held in this process's memory."""

    def __init__(self, retention_s: float = 600.0) -> None:
        self.retention_s = retention_s
        self._logs: dict[uuid.UUID, _Log] = {}

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.retention_s
        for key in [
            k for k, log in self._logs.items() if log.finished_at and log.finished_at < cutoff
        ]:
            del self._logs[key]

    def create(self, message_id: uuid.UUID, owner: uuid.UUID) -> None:
        """Open a stream."""
        self._expire()
        self._logs[message_id] = _Log(owner=owner)

    def publish(self, message_id: uuid.UUID, data: dict[str, Any]) -> int:
        """Append an event; returns its id."""
        log = self._logs[message_id]
        event = StreamEvent(id=len(log.events) + 1, data=data)
        log.events.append(event)
        log.notify()
        return event.id

    def close(self, message_id: uuid.UUID) -> None:
        """Mark the stream finished."""
        log = self._logs.get(message_id)
        if log is not None:
            log.finished_at = time.monotonic()
            log.notify()

    def owner(self, message_id: uuid.UUID) -> uuid.UUID | None:
        """Whose stream it is."""
        self._expire()
        log = self._logs.get(message_id)
        return log.owner if log else None

    async def subscribe(
        self, message_id: uuid.UUID, after: int, ping_s: float
    ) -> AsyncIterator[StreamEvent | None]:
        """Replay, then follow live until the stream finishes."""
        log = self._logs.get(message_id)
        if log is None:
            return
        cursor = max(0, after)
        while True:
            while cursor < len(log.events):
                yield log.events[cursor]
                cursor += 1
            if log.finished_at is not None:
                return
            changed = log.changed
            try:
                await asyncio.wait_for(changed.wait(), timeout=ping_s)
            except TimeoutError:
                yield None
