"""UTC days and months: the periods of usage reports and the windows of quotas."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


def current_month(today: date) -> tuple[date, date]:
    """The first and the last day of `today`'s month."""
    first = today.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Windows:
    """The current UTC day and month, and when each resets."""

    day: date
    day_start: datetime
    day_reset: datetime
    month_start: datetime
    month_reset: datetime

    @classmethod
    def at(cls, now: datetime) -> Windows:
        """The windows that hold `now`."""
        today = now.astimezone(UTC).date()
        first, last = current_month(today)
        start = datetime.combine(today, time(), tzinfo=UTC)
        month = datetime.combine(first, time(), tzinfo=UTC)
        following = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
        return cls(today, start, start + timedelta(days=1), month, following)
