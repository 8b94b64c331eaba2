"""Usage reports: a user's rows summed over UTC days, per day, model or API key."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from vektor.usage.quota import Limits, used_from_rows
from vektor.usage.repository import Aggregate, UsageRepository
from vektor.usage.schemas import (
    AdminGroupBy,
    AdminUsageReport,
    GroupBy,
    ModelSeries,
    QuotaLimits,
    QuotaReport,
    QuotaResets,
    QuotaUsed,
    Spender,
    UsageDashboard,
    UsageGroup,
    UsageReport,
    UsageTotals,
)
from vektor.usage.windows import Windows, current_month

MAX_SPAN_DAYS = 366
DASHBOARD_DAYS = 30
TOP_USERS = 10


def _group(row: Aggregate) -> UsageGroup:
    key, requests, prompt, completion, cost = row
    return UsageGroup(
        key=key,
        requests=requests,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
    )


def _every_day(groups: list[UsageGroup], first: date, last: date) -> list[UsageGroup]:
    """One row per day of the period, zero where nothing was used."""
    found = {g.key: g for g in groups}
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    zero = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": Decimal(0)}
    return [found.get(day) or UsageGroup(key=day, **zero) for day in days]


def _report(
    aggregates: Sequence[Aggregate], first: date, last: date, group_by: str
) -> tuple[UsageTotals, list[UsageGroup]]:
    """The groups of the period (every day of it, by day) and their totals."""
    groups = [_group(row) for row in aggregates]
    if group_by == "day":
        groups = _every_day(groups, first, last)
    totals = UsageTotals(
        requests=sum(g.requests for g in groups),
        prompt_tokens=sum(g.prompt_tokens for g in groups),
        completion_tokens=sum(g.completion_tokens for g in groups),
        cost=sum((g.cost for g in groups), Decimal(0)),
    )
    return totals, groups


async def usage_report(
    session: AsyncSession, *, user_id: uuid.UUID, first: date, last: date, group_by: GroupBy
) -> UsageReport:
    """The user's usage from `first` to `last` (inclusive, UTC); the totals are the sums
    of the rows."""
    start = datetime.combine(first, time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
    aggregates = await UsageRepository(session).aggregate(
        user_id=user_id, start=start, end=end, group_by=group_by
    )
    totals, groups = _report(aggregates, first, last, group_by)
    return UsageReport(from_=first, to=last, group_by=group_by, totals=totals, rows=groups)


async def admin_usage_report(
    session: AsyncSession, *, first: date, last: date, group_by: AdminGroupBy
) -> AdminUsageReport:
    """Every user's usage from `first` to `last` (inclusive, UTC), including the rows of
    deleted accounts (user null)."""
    aggregates = await UsageRepository(session).aggregate_all(
        first=first.isoformat(), last=last.isoformat(), group_by=group_by
    )
    totals, groups = _report(aggregates, first, last, group_by)
    return AdminUsageReport(from_=first, to=last, group_by=group_by, totals=totals, rows=groups)


async def quota_report(
    session: AsyncSession, *, user_id: uuid.UUID, limits: Limits, now: datetime
) -> QuotaReport:
    """The user's limits and what the usage rows say they used in the current windows."""
    windows = Windows.at(now)
    used = await used_from_rows(session, ("user", user_id), windows)
    return QuotaReport(
        limits=QuotaLimits(
            tokens_per_day=limits.tokens_per_day,
            requests_per_day=limits.requests_per_day,
            budget_per_month=limits.budget_per_month,
        ),
        used=QuotaUsed(
            tokens_today=used.tokens_today,
            requests_today=used.requests_today,
            cost_this_month=used.cost_this_month,
        ),
        resets_at=QuotaResets(day=windows.day_reset, month=windows.month_reset),
    )


async def dashboard(
    session: AsyncSession, *, today: date, quota_rejections: dict[str, int]
) -> UsageDashboard:
    """Every model's tokens on each of the last 30 UTC days, and who spent most this UTC
    month (from the per-day rollups)."""
    repository = UsageRepository(session)
    days = [today - timedelta(days=n) for n in range(DASHBOARD_DAYS - 1, -1, -1)]
    index = {day.isoformat(): n for n, day in enumerate(days)}
    series: dict[str, list[int]] = {}
    for day, model, tokens in await repository.tokens_by_day_and_model(
        first=days[0].isoformat(), last=today.isoformat()
    ):
        series.setdefault(model, [0] * len(days))[index[day]] = tokens
    month, _ = current_month(today)
    spenders = await repository.top_spenders(
        first=month.isoformat(), last=today.isoformat(), limit=TOP_USERS
    )
    return UsageDashboard(
        days=days,
        tokens_per_day=[ModelSeries(model=m, tokens=t) for m, t in sorted(series.items())],
        month=month,
        top_users=[
            Spender(user_id=key, username=name, **_group(sums).model_dump(exclude={"key"}))
            for key, name, sums in spenders
        ],
        quota_rejections=dict(sorted(quota_rejections.items())),
    )
