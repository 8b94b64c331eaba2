"""The per-user change feed: what changed in a user's data, for their other devices.

`EventBus` is the interface; `MemoryEventBus` keeps a bounded history per user in this
process. Cursors are `<epoch>-<seq>`: the epoch changes when the process restarts, so a
cursor from before a restart (or older than the history) asks the client to resync.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

RESYNC = "resync"
HISTORY_PER_USER = 1000


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One change: `{type, id, at}` plus its cursor."""

    cursor: str
    type: str
    id: str | None
    at: str

    def payload(self) -> dict[str, Any]:
        """The event's JSON body."""
        return {"type": self.type, "id": self.id, "at": self.at}


class EventBus(Protocol):
    """Publish a user's changes; follow them from a cursor."""

    async def publish(self, user_id: uuid.UUID, kind: str, object_id: object = None) -> None:
        """Record and deliver a change (never raises: the feed is best effort)."""
        ...

    async def since(self, user_id: uuid.UUID, cursor: str | None) -> tuple[list[ChangeEvent], bool]:
        """Events after the cursor, and whether the client must resync instead."""
        ...

    def follow(
        self, user_id: uuid.UUID, cursor: str | None, ping_s: float
    ) -> AsyncIterator[ChangeEvent | None]:
        """Missed events (or a resync), then live ones; None when idle (a heartbeat)."""
        ...

    async def current(self, user_id: uuid.UUID) -> str:
        """The cursor of the newest event."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass
class _Feed:
    events: deque[ChangeEvent] = field(default_factory=lambda: deque(maxlen=HISTORY_PER_USER))
    seq: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryEventBus:
    """Change feeds held in this process."""

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(4)
        self._feeds: dict[uuid.UUID, _Feed] = {}

    def _feed(self, user_id: uuid.UUID) -> _Feed:
        feed = self._feeds.get(user_id)
        if feed is None:
            feed = self._feeds[user_id] = _Feed()
        return feed

    async def publish(self, user_id: uuid.UUID, kind: str, object_id: object = None) -> None:
        """Record and wake the user's followers."""
        self.publish_now(user_id, kind, object_id)

    def publish_now(self, user_id: uuid.UUID, kind: str, object_id: object = None) -> None:
        """Record and wake the user's followers (no await: usable from sync code)."""
        feed = self._feed(user_id)
        feed.seq += 1
        feed.events.append(
            ChangeEvent(
                cursor=f"{self.epoch}-{feed.seq}",
                type=kind,
                id=None if object_id is None else str(object_id),
                at=datetime.now(UTC).isoformat(),
            )
        )
        changed, feed.changed = feed.changed, asyncio.Event()
        changed.set()

    async def current(self, user_id: uuid.UUID) -> str:
        """The cursor of the newest event."""
        return self._current(user_id)

    def _current(self, user_id: uuid.UUID) -> str:
        return f"{self.epoch}-{self._feed(user_id).seq}"

    async def aclose(self) -> None:
        """Nothing to release."""

    def _parse(self, cursor: str | None) -> int | None:
        """The sequence number of a cursor of this epoch; None if it is not one."""
        if cursor is None:
            return None
        epoch, _, seq = cursor.partition("-")
        if epoch != self.epoch or not (seq.isascii() and seq.isdecimal()):
            return None
        return int(seq)

    async def since(self, user_id: uuid.UUID, cursor: str | None) -> tuple[list[ChangeEvent], bool]:
        """Events after the cursor; resync if it is unknown or older than the history."""
        feed = self._feed(user_id)
        seq = self._parse(cursor)
        if seq is None or seq > feed.seq:
            return [], True
        oldest = feed.seq - len(feed.events)  # the last sequence number no longer held
        if seq < oldest:
            return [], True
        return list(feed.events)[len(feed.events) - (feed.seq - seq) :], False

    def _resync(self, user_id: uuid.UUID) -> ChangeEvent:
        return ChangeEvent(
            cursor=self._current(user_id), type=RESYNC, id=None, at=datetime.now(UTC).isoformat()
        )

    async def follow(
        self, user_id: uuid.UUID, cursor: str | None, ping_s: float
    ) -> AsyncIterator[ChangeEvent | None]:
        """Missed events (or a resync marker), then live ones, until the client leaves."""
        feed = self._feed(user_id)
        seq = feed.seq if cursor is None else self._parse(cursor)
        if seq is None or seq > feed.seq:
            seq = -1  # unknown cursor: resync below
        while True:
            changed = feed.changed
            if seq < feed.seq - len(feed.events):
                # Too far behind the history (or a cursor of another run): start over.
                seq = feed.seq
                yield self._resync(user_id)
                continue
            if feed.seq > seq:
                new = list(feed.events)[len(feed.events) - (feed.seq - seq) :]
                seq = feed.seq
                for event in new:
                    yield event
                continue
            try:
                async with asyncio.timeout(ping_s):
                    await changed.wait()
            except TimeoutError:
                yield None
