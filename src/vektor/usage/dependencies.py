"""The period and grouping of a usage report, checked before anything is read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError

from vektor.usage.schemas import GroupBy
from vektor.usage.service import MAX_SPAN_DAYS
from vektor.usage.windows import current_month


@dataclass(frozen=True, slots=True)
class Period:
    """Inclusive UTC days, and how to group them."""

    first: date
    last: date
    group_by: GroupBy


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("query", field), "msg": message, "type": "value_error"}]
    )


async def usage_period(
    from_: Annotated[date | None, Query(alias="from", description="First day, UTC")] = None,
    to: Annotated[date | None, Query(description="Last day (inclusive), UTC")] = None,
    group_by: GroupBy = "day",
) -> Period:
    """`from` and `to`, at most 366 days apart; without either, the current UTC month; with
    one, that day's month supplies the other."""
    first, last = current_month(from_ or to or datetime.now(UTC).date())
    first, last = from_ or first, to or last
    if last < first:
        raise _invalid("to", "`to` is before `from`")
    if (last - first).days + 1 > MAX_SPAN_DAYS:
        raise _invalid("to", f"At most {MAX_SPAN_DAYS} days from `from` to `to`")
    return Period(first, last, group_by)


UsagePeriod = Annotated[Period, Depends(usage_period)]
