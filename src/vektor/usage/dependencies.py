"""The period and grouping of a usage report, checked before anything is read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError

from vektor.usage.schemas import AdminGroupBy, GroupBy
from vektor.usage.service import MAX_SPAN_DAYS
from vektor.usage.windows import current_month


@dataclass(frozen=True, slots=True)
class Period:
    """Inclusive UTC days, and how to group them."""

    first: date
    last: date
    group_by: GroupBy


@dataclass(frozen=True, slots=True)
class AdminPeriod:
    """Inclusive UTC days, and how to group every user's rows."""

    first: date
    last: date
    group_by: AdminGroupBy


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("query", field), "msg": message, "type": "value_error"}]
    )


FromDay = Annotated[date | None, Query(alias="from", description="First day, UTC")]
ToDay = Annotated[date | None, Query(description="Last day (inclusive), UTC")]


def _days(from_: date | None, to: date | None) -> tuple[date, date]:
    """`from` and `to`, at most 366 days apart; without either, the current UTC month; with
    one, that day's month supplies the other."""
    first, last = current_month(from_ or to or datetime.now(UTC).date())
    first, last = from_ or first, to or last
    if last < first:
        raise _invalid("to", "`to` is before `from`")
    if (last - first).days + 1 > MAX_SPAN_DAYS:
        raise _invalid("to", f"At most {MAX_SPAN_DAYS} days from `from` to `to`")
    return first, last


async def usage_period(
    from_: FromDay = None, to: ToDay = None, group_by: GroupBy = "day"
) -> Period:
    """The caller's report period (see `_days`), by day, model or API key."""
    return Period(*_days(from_, to), group_by)


async def admin_usage_period(
    from_: FromDay = None, to: ToDay = None, group_by: AdminGroupBy = "day"
) -> AdminPeriod:
    """The admin report's period (see `_days`), by day, model or user."""
    return AdminPeriod(*_days(from_, to), group_by)


UsagePeriod = Annotated[Period, Depends(usage_period)]
AdminUsagePeriod = Annotated[AdminPeriod, Depends(admin_usage_period)]
