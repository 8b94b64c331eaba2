"""Admit: whether a user may start one more answer now."""

from __future__ import annotations

import uuid
from collections import Counter

from vektor.core.errors import RateLimited


class StreamSlots:
    """Answers in progress per user in this process, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken: Counter[uuid.UUID] = Counter()

    def take(self, user_id: uuid.UUID) -> None:
        """Take one of the user's slots, or 429 (no await in between: no race)."""
        if self.taken[user_id] >= self.limit:
            raise RateLimited(1, "Too many answers in progress")
        self.taken[user_id] += 1

    def release(self, user_id: uuid.UUID) -> None:
        """Give a slot back."""
        self.taken[user_id] -= 1
        if self.taken[user_id] <= 0:
            del self.taken[user_id]
