"""Rules of administration: listing accounts, changing them, and the last admin standing.
The HTTP routes and the `vektor admin` commands both come here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.admin.schemas import AdminUserRead, AdminUserUpdate, QuotaValues, UsageMonth
from vektor.auth.models import User
from vektor.auth.repository import SessionRepository, UserRepository
from vektor.auth.service import revoke_sessions
from vektor.core.errors import Conflict, NotFound
from vektor.usage.limits import LimitBook
from vektor.usage.models import UserQuota
from vektor.usage.repository import QuotaRepository, UsageRepository
from vektor.usage.windows import Windows

LAST_ADMIN = "The last active admin cannot be disabled or demoted"
QUOTA_FIELDS = ("tokens_per_day", "requests_per_day", "budget_per_month")


async def list_users(
    session: AsyncSession, *, query: str | None, limit: int, offset: int
) -> list[AdminUserRead]:
    """A page of accounts (oldest first), `query` matching email or username."""
    users = await UserRepository(session).search(query=query, limit=limit, offset=offset)
    return await _read(session, users)


async def get_user(session: AsyncSession, *, user_id: uuid.UUID) -> AdminUserRead:
    """One account as listed; NotFound if there is none."""
    user = await UserRepository(session).get(user_id)
    if user is None:
        raise NotFound("User not found")
    [read] = await _read(session, [user])
    return read


async def user_id_by_email(session: AsyncSession, *, email: str) -> uuid.UUID:
    """The id of the account with this email (or username); NotFound if there is none."""
    user = await UserRepository(session).get_by_login(email)
    if user is None:
        raise NotFound(f"No account {email!r}")
    return user.id


async def update_user(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    changes: AdminUserUpdate,
    limits: LimitBook | None = None,
) -> AdminUserRead:
    """Apply an admin's changes. Disabling signs the user out everywhere (its API keys stop
    with the account); the last active admin is never disabled or demoted (Conflict)."""
    user = await UserRepository(session).get(user_id)
    if user is None:
        raise NotFound("User not found")
    given = changes.model_fields_set
    is_admin = bool(changes.is_admin) if "is_admin" in given else user.is_admin
    disabled = bool(changes.disabled) if "disabled" in given else user.disabled
    steps_down = user.is_admin and not user.disabled and (not is_admin or disabled)
    if steps_down and await UserRepository(session).other_active_admins(user.id) == 0:
        raise Conflict(LAST_ADMIN)
    if disabled and not user.disabled:
        await revoke_sessions(session, user_id=user.id, reason="disabled")
    user.is_admin, user.disabled = is_admin, disabled
    if "mcp_pools" in given:
        user.mcp_pools = (
            None if changes.mcp_pools is None else list(dict.fromkeys(changes.mcp_pools))
        )
    if "quota" in given:
        await _set_quota(session, user.id, changes.quota)
        if limits is not None:
            limits.forget_user(user.id)
    await session.flush()
    logger.info("account changed by an admin user={} fields={}", user.id, sorted(given))
    [read] = await _read(session, [user])
    return read


async def _set_quota(session: AsyncSession, user_id: uuid.UUID, quota: QuotaValues | None) -> None:
    """Set the limits given (all of them back to the defaults for a null quota)."""
    repository = QuotaRepository(session)
    row = await repository.get_user(user_id) or UserQuota(user_id=user_id)
    given = QUOTA_FIELDS if quota is None else quota.model_fields_set
    for name in given:
        setattr(row, name, None if quota is None else getattr(quota, name))
    row.updated_at = datetime.now(UTC)
    await repository.save_user(row)


async def _read(session: AsyncSession, users: Sequence[User]) -> list[AdminUserRead]:
    """The listed shape of these accounts: a fixed number of queries for any page."""
    ids = [user.id for user in users]
    windows = Windows.at(datetime.now(UTC))
    quotas = await QuotaRepository(session).users(ids)
    seen = await SessionRepository(session).last_seen(ids)
    used = await UsageRepository(session).totals_by_user(
        ids, start=windows.month_start, end=windows.month_reset
    )
    listed = []
    for user in users:
        quota = quotas.get(user.id)
        requests, tokens, cost = used.get(user.id, (0, 0, Decimal(0)))
        listed.append(
            AdminUserRead(
                id=user.id,
                email=user.email,
                username=user.username,
                is_admin=user.is_admin,
                disabled=user.disabled,
                created_at=user.created_at,
                last_seen=seen.get(user.id),
                quota=QuotaValues(
                    **{name: getattr(quota, name) for name in QUOTA_FIELDS} if quota else {}
                ),
                mcp_pools=user.mcp_pools,
                usage_month=UsageMonth(requests=requests, tokens=tokens, cost=cost),
            )
        )
    return listed
