"""/users/me/usage: what the caller's answers consumed."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from vektor.auth.dependencies import CallerId
from vektor.core.dependencies import SessionDep
from vektor.state import app_state
from vektor.usage import service
from vektor.usage.dependencies import UsagePeriod
from vektor.usage.schemas import QuotaReport, UsageReport

router = APIRouter(prefix="/users/me", tags=["usage"])


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
