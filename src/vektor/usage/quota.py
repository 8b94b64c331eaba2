"""Quotas: each user's tokens and requests per UTC day and spending per UTC month, checked
before an answer starts (the answer that crosses a limit runs to its end).

The usage rows are the truth. Alone, a process keeps each user's counters in memory,
built from the rows the first time the user asks in a window and then advanced by every
answer it finishes. With REDIS_URL the counters are in Redis (`redis_quota.py`), shared by
every instance and advanced atomically; lost or expired, they are built again from the
rows; while Redis cannot be reached, each check sums the rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vektor.core.config import Settings
from vektor.core.database import session_scope
from vektor.usage.errors import CountersDown, QuotaExceeded
from vektor.usage.hot_repository import UsageRow
from vektor.usage.repository import UsageRepository
from vektor.usage.windows import Windows

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from vektor.usage.redis_quota import RedisQuotaCounters


@dataclass(frozen=True, slots=True)
class Limits:
    """A user's limits; None is unlimited."""

    tokens_per_day: int | None = None
    requests_per_day: int | None = None
    budget_per_month: Decimal | None = None

    @property
    def unlimited(self) -> bool:
        """No limit is set."""
        return (self.tokens_per_day, self.requests_per_day, self.budget_per_month) == (
            None,
            None,
            None,
        )


@dataclass(slots=True)
class Used:
    """What a user used in the current windows."""

    day: date
    tokens_today: int = 0
    requests_today: int = 0
    cost_this_month: Decimal = Decimal(0)


async def used_from_rows(session: AsyncSession, user_id: uuid.UUID, windows: Windows) -> Used:
    """The user's use in the windows, summed from the usage rows."""
    repository = UsageRepository(session)
    tokens, requests = await repository.tokens_and_requests(
        user_id=user_id, start=windows.day_start, end=windows.day_reset
    )
    cost = await repository.cost(
        user_id=user_id, start=windows.month_start, end=windows.month_reset
    )
    return Used(windows.day, tokens, requests, cost)


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds() + 0.999))


def check_limits(limits: Limits, used: Used, windows: Windows, now: datetime) -> None:
    """Raise QuotaExceeded for the first limit that is used up."""
    day, month = _seconds_until(windows.day_reset, now), _seconds_until(windows.month_reset, now)
    if limits.tokens_per_day is not None and used.tokens_today >= limits.tokens_per_day:
        raise QuotaExceeded("tokens_per_day", day)
    if limits.requests_per_day is not None and used.requests_today >= limits.requests_per_day:
        raise QuotaExceeded("requests_per_day", day)
    if limits.budget_per_month is not None and used.cost_this_month >= limits.budget_per_month:
        raise QuotaExceeded("budget_per_month", month)


class Quotas:
    """Admission by quota, and the counters behind it."""

    def __init__(
        self,
        limits: Limits,
        sessionmaker: async_sessionmaker[AsyncSession],
        shared: RedisQuotaCounters | None = None,
    ) -> None:
        self.limits = limits
        self.sessionmaker = sessionmaker
        self.shared = shared  # several instances: the counters are in Redis
        self._counters: dict[uuid.UUID, Used] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis | None = None,
    ) -> Quotas:
        """The DEFAULT_* limits; counters in Redis when a client is given (REDIS_URL)."""
        limits = Limits(
            tokens_per_day=settings.default_tokens_per_day,
            requests_per_day=settings.default_requests_per_day,
            budget_per_month=settings.default_budget_per_month,
        )
        if redis is None:
            return cls(limits, sessionmaker)
        from vektor.usage.redis_quota import RedisQuotaCounters

        return cls(limits, sessionmaker, RedisQuotaCounters(redis, settings.redis_namespace))

    def limits_for(self, user_id: uuid.UUID) -> Limits:
        """The user's limits: the defaults from the settings."""
        return self.limits

    async def check(self, user_id: uuid.UUID) -> None:
        """Refuse (429) a user over any quota; nothing to do when every limit is unlimited."""
        limits = self.limits_for(user_id)
        if limits.unlimited:
            return
        now = datetime.now(UTC)
        windows = Windows.at(now)
        if self.shared is not None:
            used = await self._shared_used(self.shared, user_id, windows)
        else:
            used = await self._local_used(user_id, windows)
        check_limits(limits, used, windows, now)

    async def _rows(self, user_id: uuid.UUID, windows: Windows) -> Used:
        async for session in session_scope(self.sessionmaker):
            return await used_from_rows(session, user_id, windows)
        raise AssertionError("session_scope yields once")  # pragma: no cover

    async def _local_used(self, user_id: uuid.UUID, windows: Windows) -> Used:
        used = self._counters.get(user_id)
        if used is None or used.day != windows.day:
            used = self._counters[user_id] = await self._rows(user_id, windows)
        return used

    async def _shared_used(
        self, shared: RedisQuotaCounters, user_id: uuid.UUID, windows: Windows
    ) -> Used:
        """Redis's counters, built from the rows when missing; the rows alone while Redis
        cannot be reached."""
        try:
            counts = await shared.get(user_id, windows.day)
            if counts is None:
                built = await self._rows(user_id, windows)
                counts = (built.tokens_today, built.requests_today, built.cost_this_month)
                counts = await shared.seed(user_id, windows.day, counts)
        except CountersDown as exc:
            logger.warning("quota counters unreachable, reading the usage rows: {}", exc)
            return await self._rows(user_id, windows)
        return Used(windows.day, *counts)

    async def add(self, row: UsageRow) -> None:
        """Count a finished answer's row into its user's counters."""
        if self.limits.unlimited:
            return
        day = row.created_at.astimezone(UTC).date()
        # A cached answer counts against the requests quota only (SPEC §3.11); cost 0.
        tokens = 0 if row.cached else row.prompt_tokens + row.completion_tokens
        if self.shared is not None:
            try:
                await self.shared.add(row.user_id, day, tokens, row.cost)
            except CountersDown as exc:  # corrected from the rows at the next rebuild
                logger.warning("quota counters unreachable: {}", exc)
            return
        used = self._counters.get(row.user_id)
        if used is None:
            return
        if used.day != day:
            del self._counters[row.user_id]  # a new window: built again from the rows
            return
        used.tokens_today += tokens
        used.requests_today += 1
        used.cost_this_month += row.cost
