"""/users/me/usage: what the caller's answers consumed; /admin/usage: what everyone's did."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from vektor.auth.dependencies import AdminUser, CallerId
from vektor.core.dependencies import SessionDep
from vektor.state import app_state
from vektor.usage import service
from vektor.usage.dependencies import AdminUsagePeriod, UsagePeriod
from vektor.usage.schemas import AdminUsageReport, QuotaReport, UsageReport

router = APIRouter(prefix="/users/me", tags=["usage"])
admin_router = APIRouter(prefix="/admin", tags=["admin"])


@router.get(
    "/usage",
    response_model=UsageReport,
    response_model_by_alias=True,
    operation_id="get_users_me_usage",
    responses={422: {"description": "Malformed date, unknown group_by, or over 366 days"}},
)
async def read_usage(user_id: CallerId, period: UsagePeriod, session: SessionDep) -> UsageReport:
    """Requests, tokens and cost of your answers from `from` to `to` (inclusive UTC days;
    default the current month), grouped by day, model or API key. Costs are decimal strings
    in USD; the totals are the sums of the rows."""
    return await service.usage_report(
        session,
        user_id=user_id,
        first=period.first,
        last=period.last,
        group_by=period.group_by,
    )


@router.get("/quota", response_model=QuotaReport, operation_id="get_users_me_quota")
async def read_quota(user_id: CallerId, request: Request, session: SessionDep) -> QuotaReport:
    """Your quotas (null: unlimited), what you used of them in the current UTC day and
    month, and when each resets. Over one, answers are refused with 429 `quota_exceeded`
    until it resets."""
    limits = await app_state(request).pipeline.quotas.limits_for(user_id)
    return await service.quota_report(
        session, user_id=user_id, limits=limits, now=datetime.now(UTC)
    )


@admin_router.get(
    "/usage",
    response_model=AdminUsageReport,
    response_model_by_alias=True,
    operation_id="get_admin_usage",
    responses={
        403: {"description": "Not an admin"},
        422: {"description": "Malformed date, unknown group_by, or over 366 days"},
    },
)
async def read_all_usage(
    admin: AdminUser, period: AdminUsagePeriod, session: SessionDep
) -> AdminUsageReport:
    """Admin: requests, tokens and cost of every user's answers from `from` to `to`
    (inclusive UTC days; default the current month), grouped by day, model or user (the
    user's id; null for accounts since deleted, whose rows are kept)."""
    return await service.admin_usage_report(
        session, first=period.first, last=period.last, group_by=period.group_by
    )
