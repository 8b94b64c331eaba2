"""Usage reports: totals and rows; costs are decimal strings (exact, e.g. "0.000011650")."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from vektor.usage.pricing import NANO

GroupBy = Literal["day", "model", "api_key"]
AdminGroupBy = Literal["day", "model", "user"]


def _exact(value: Decimal) -> str:
    return format(value.quantize(NANO), "f")


# USD as a decimal string to the nano-dollar, never a float, e.g. "0.000011650".
Cost = Annotated[Decimal, PlainSerializer(_exact, return_type=str, when_used="json")]


# Limits as given by an admin or with a new API key: whole numbers (never true/false or
# 1.5), budgets in USD to the nano-dollar; never negative, never past what is stored.
TokensLimit = Annotated[int, Field(strict=True, ge=0, le=10**15)]
RequestsLimit = Annotated[int, Field(strict=True, ge=0, le=10**12)]
BudgetLimit = Annotated[
    Decimal,
    Field(ge=0, le=Decimal(10**10), max_digits=20, decimal_places=9, allow_inf_nan=False),
    PlainSerializer(_exact, return_type=str, when_used="json"),
]


class UsageTotals(BaseModel):
    """Requests, tokens and cost over the period."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Cost = Field(description="USD, a decimal string to the nano-dollar")


class UsageGroup(UsageTotals):
    """One group: a UTC day (`YYYY-MM-DD`), a public model, an API key's id (null for
    answers asked with an access token), or (admins) a user's id (null for deleted
    accounts)."""

    key: str | None


class _Report(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from", serialization_alias="from")
    to: date
    totals: UsageTotals
    rows: list[UsageGroup]


class UsageReport(_Report):
    """GET /users/me/usage."""

    group_by: GroupBy


class AdminUsageReport(_Report):
    """GET /admin/usage: the same over every user's rows."""

    group_by: AdminGroupBy


class QuotaLimits(BaseModel):
    """A user's limits; null is unlimited."""

    tokens_per_day: int | None
    requests_per_day: int | None
    budget_per_month: Cost | None = Field(description="USD, a decimal string")


class QuotaUsed(BaseModel):
    """What the user used in the current windows."""

    tokens_today: int
    requests_today: int
    cost_this_month: Cost


class QuotaResets(BaseModel):
    """When the windows start again (UTC midnight, the first of next month)."""

    day: datetime
    month: datetime


class QuotaReport(BaseModel):
    """GET /users/me/quota."""

    limits: QuotaLimits
    used: QuotaUsed
    resets_at: QuotaResets


class ModelSeries(BaseModel):
    """One model's tokens (prompt + completion) on each day of the dashboard's days."""

    model: str
    tokens: list[int]


class Spender(UsageTotals):
    """A user and their usage this month; `user_id` null for deleted accounts."""

    user_id: str | None
    username: str | None


class UsageDashboard(BaseModel):
    """GET /api/dashboard/usage: the dashboard's usage charts."""

    days: list[date] = Field(description="The last 30 UTC days, oldest first")
    tokens_per_day: list[ModelSeries]
    month: date = Field(description="The first day of the current UTC month")
    top_users: list[Spender] = Field(description="Who spent most this month, most first")
    quota_rejections: dict[str, int] = Field(
        description="Answers this process refused with 429 quota_exceeded, by limit"
    )
