"""Admit: whether a user may start one more answer now.

`MAX_CONCURRENT_STREAMS` holds per user across every process: alone, a counter in memory
(`StreamSlots`, here); with Redis, leases every instance sees (`RedisStreamSlots`, in
`redis_admission.py`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from vektor.core.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Slot:
    """One answer's place among its user's `MAX_CONCURRENT_STREAMS`."""

    user_id: uuid.UUID
    token: str = ""  # the lease's member in Redis; empty for a slot of this process
    shared: bool = False


class StreamSlots:
    """Answers in progress per user in this process, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken: Counter[uuid.UUID] = Counter()

    async def take(self, user_id: uuid.UUID) -> Slot:
        """One of the user's slots, or 429."""
        return self.take_local(user_id)

    async def release(self, slot: Slot) -> None:
        """Give a slot back."""
        self.release_local(slot.user_id)

    def take_local(self, user_id: uuid.UUID) -> Slot:
        """A slot counted in this process (no await in between: no race)."""
        if self.taken[user_id] >= self.limit:
            raise RateLimited(1, "Too many answers in progress")
        self.taken[user_id] += 1
        return Slot(user_id)

    def release_local(self, user_id: uuid.UUID) -> None:
        """Give back a slot counted in this process."""
        self.taken[user_id] -= 1
        if self.taken[user_id] <= 0:
            del self.taken[user_id]

    def start(self) -> None:
        """Start background work (none in memory)."""

    async def aclose(self) -> None:
        """Stop background work (none in memory)."""
