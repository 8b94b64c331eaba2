"""Quotas: each user's tokens and requests per UTC day and spending per UTC month, and an
API key's own tokens per day and spending per month, checked before an answer starts (the
answer that crosses a limit runs to its end). A user's limits are an admin's values over
the DEFAULT_* settings (`limits.py`).

The usage rows are the truth. Alone, a process keeps each user's (and limited key's)
counters in memory, built from the rows the first time it asks in a window and then
advanced by every answer it finishes. With REDIS_URL the counters are in Redis
(`redis_quota.py`), shared by every instance and advanced atomically; lost or expired, they
are built again from the rows; while Redis cannot be reached, each check sums the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vektor.core.config import Settings
from vektor.core.database import session_scope
from vektor.core.metrics import count_quota_rejection
from vektor.usage.errors import CountersDown, QuotaExceeded
from vektor.usage.hot_repository import QuotaHotRepository, UsageRow
from vektor.usage.limits import LimitBook, Limits
from vektor.usage.repository import Owner, UsageRepository
from vektor.usage.windows import Windows

if TYPE_CHECKING:
    import uuid

    from redis.asyncio import Redis

    from vektor.core.direct import DirectDatabase
    from vektor.usage.redis_quota import RedisQuotaCounters

__all__ = ["Limits", "Quotas", "Used", "check_limits", "used_from_rows"]


@dataclass(slots=True)
class Used:
    """What a user (or an API key) used in the current windows."""

    day: date
    tokens_today: int = 0
    requests_today: int = 0
    cost_this_month: Decimal = Decimal(0)


async def used_from_rows(session: AsyncSession, owner: Owner, windows: Windows) -> Used:
    """The user's (or key's) use in the windows, summed from the usage rows."""
    repository = UsageRepository(session)
    tokens, requests = await repository.tokens_and_requests(
        owner=owner, start=windows.day_start, end=windows.day_reset
    )
    cost = await repository.cost(owner=owner, start=windows.month_start, end=windows.month_reset)
    return Used(windows.day, tokens, requests, cost)


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds() + 0.999))


def _over(limits: Limits, used: Used) -> str | None:
    """The first limit that is used up, if any."""
    if limits.tokens_per_day is not None and used.tokens_today >= limits.tokens_per_day:
        return "tokens_per_day"
    if limits.requests_per_day is not None and used.requests_today >= limits.requests_per_day:
        return "requests_per_day"
    if limits.budget_per_month is not None and used.cost_this_month >= limits.budget_per_month:
        return "budget_per_month"
    return None


def check_limits(
    limits: Limits, used: Used, windows: Windows, now: datetime, *, of_key: bool = False
) -> None:
    """Raise QuotaExceeded (and count it) for the first limit that is used up."""
    limit = _over(limits, used)
    if limit is None:
        return
    count_quota_rejection(limit)
    reset = windows.month_reset if limit == "budget_per_month" else windows.day_reset
    raise QuotaExceeded(limit, _seconds_until(reset, now), of_key=of_key)


class Quotas:
    """Admission by quota, and the counters behind it."""

    def __init__(
        self,
        limits: Limits,
        sessionmaker: async_sessionmaker[AsyncSession],
        direct: DirectDatabase,
        shared: RedisQuotaCounters | None = None,
    ) -> None:
        self.limits = limits  # the DEFAULT_* settings
        self.book = LimitBook(limits, sessionmaker, QuotaHotRepository(direct))
        self.sessionmaker = sessionmaker
        self.shared = shared  # several instances: the counters are in Redis
        self._counters: dict[Owner, Used] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        direct: DirectDatabase,
        redis: Redis | None = None,
    ) -> Quotas:
        """The DEFAULT_* limits; counters in Redis when a client is given (REDIS_URL)."""
        limits = Limits(
            tokens_per_day=settings.default_tokens_per_day,
            requests_per_day=settings.default_requests_per_day,
            budget_per_month=settings.default_budget_per_month,
        )
        if redis is None:
            return cls(limits, sessionmaker, direct)
        from vektor.usage.redis_quota import RedisQuotaCounters

        shared = RedisQuotaCounters(redis, settings.redis_namespace)
        return cls(limits, sessionmaker, direct, shared)

    async def limits_for(self, user_id: uuid.UUID) -> Limits:
        """The user's limits: an admin's values over the defaults from the settings."""
        return await self.book.for_user(user_id)

    async def check(self, user_id: uuid.UUID, api_key_id: uuid.UUID | None = None) -> None:
        """Refuse (429) a user over any of their quotas, or a request with an API key over
        any of the key's; nothing to read when every limit is unlimited."""
        limits = await self.book.for_user(user_id)
        key_limits = None if api_key_id is None else await self.book.for_key(api_key_id)
        if limits.unlimited and (key_limits is None or key_limits.unlimited):
            return
        now = datetime.now(UTC)
        windows = Windows.at(now)
        if not limits.unlimited:
            used = await self._used(("user", user_id), windows)
            check_limits(limits, used, windows, now)
        if api_key_id is not None and key_limits is not None and not key_limits.unlimited:
            used = await self._used(("key", api_key_id), windows)
            check_limits(key_limits, used, windows, now, of_key=True)

    async def _used(self, owner: Owner, windows: Windows) -> Used:
        if self.shared is not None:
            return await self._shared_used(self.shared, owner, windows)
        return await self._local_used(owner, windows)

    async def _rows(self, owner: Owner, windows: Windows) -> Used:
        async for session in session_scope(self.sessionmaker):
            return await used_from_rows(session, owner, windows)
        raise AssertionError("session_scope yields once")  # pragma: no cover

    async def _local_used(self, owner: Owner, windows: Windows) -> Used:
        used = self._counters.get(owner)
        if used is None or used.day != windows.day:
            used = self._counters[owner] = await self._rows(owner, windows)
        return used

    async def _shared_used(
        self, shared: RedisQuotaCounters, owner: Owner, windows: Windows
    ) -> Used:
        """Redis's counters, built from the rows when missing; the rows alone while Redis
        cannot be reached."""
        try:
            counts = await shared.get(owner, windows.day)
            if counts is None:
                built = await self._rows(owner, windows)
                counts = (built.tokens_today, built.requests_today, built.cost_this_month)
                counts = await shared.seed(owner, windows.day, counts)
        except CountersDown as exc:
            logger.warning("quota counters unreachable, reading the usage rows: {}", exc)
            return await self._rows(owner, windows)
        return Used(windows.day, *counts)

    async def add(self, row: UsageRow) -> None:
        """Count a finished answer's row into its user's (and limited key's) counters."""
        owners: list[Owner] = []
        user_free, key_free = self.book.known_unlimited(row.user_id, row.api_key_id)
        if not user_free:
            owners.append(("user", row.user_id))
        if row.api_key_id is not None and not key_free:
            owners.append(("key", row.api_key_id))
        day = row.created_at.astimezone(UTC).date()
        # A cached answer counts against the requests quota only (SPEC §3.11); cost 0.
        tokens = 0 if row.cached else row.prompt_tokens + row.completion_tokens
        for owner in owners:
            await self._advance(owner, day, tokens, row.cost)

    async def _advance(self, owner: Owner, day: date, tokens: int, cost: Decimal) -> None:
        if self.shared is not None:
            try:
                await self.shared.add(owner, day, tokens, cost)
            except CountersDown as exc:  # corrected from the rows at the next rebuild
                logger.warning("quota counters unreachable: {}", exc)
            return
        used = self._counters.get(owner)
        if used is None:
            return
        if used.day != day:
            del self._counters[owner]  # a new window: built again from the rows
            return
        used.tokens_today += tokens
        used.requests_today += 1
        used.cost_this_month += cost
