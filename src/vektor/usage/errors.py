"""Errors of the usage domain."""

from __future__ import annotations

from vektor.core.errors import RateLimited


class QuotaExceeded(RateLimited):
    """A quota is used up: 429 until its window resets, with `code` and `limit`."""

    def __init__(self, limit: str, retry_after: int, *, of_key: bool = False) -> None:
        whose = " of this API key" if of_key else ""
        super().__init__(retry_after, f"Quota exceeded: {limit}{whose}")
        self.extra = {"code": "quota_exceeded", "limit": limit}


class CountersDown(Exception):
    """The shared quota counters cannot be reached (Redis is down)."""
