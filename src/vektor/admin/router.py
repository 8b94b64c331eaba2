"""/admin/users: every account, and an admin's changes to one."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from vektor.admin import service
from vektor.admin.dependencies import UserPage
from vektor.admin.schemas import AdminUserRead, AdminUserUpdate
from vektor.auth.dependencies import AdminUser, credentials_revoked
from vektor.core.dependencies import SessionDep
from vektor.state import app_state

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/users", response_model=list[AdminUserRead], operation_id="list_admin_users")
async def list_users(_: AdminUser, page: UserPage, session: SessionDep) -> list[AdminUserRead]:
    """Accounts, oldest first, with their own quotas (null: the default), latest activity
    and this UTC month's usage; `q` matches part of an email or username."""
    return await service.list_users(session, query=page.query, limit=page.limit, offset=page.offset)


@router.patch(
    "/users/{user_id}",
    response_model=AdminUserRead,
    operation_id="update_admin_user",
    responses={
        404: {"description": "No such user"},
        409: {"description": "The last active admin cannot be disabled or demoted"},
    },
)
async def update_user(
    user_id: uuid.UUID,
    body: AdminUserUpdate,
    _: AdminUser,
    request: Request,
    session: SessionDep,
) -> AdminUserRead:
    """Change `is_admin`, `disabled`, `quota` or `mcp_pools` (null: the default). Disabling
    signs the user out on every device and stops their API keys at once, on every
    instance; enabling lets them sign in again (old sessions stay ended)."""
    limits = app_state(request).pipeline.quotas.book
    updated = await service.update_user(session, user_id=user_id, changes=body, limits=limits)
    if body.disabled or body.is_admin is False or "mcp_pools" in body.model_fields_set:
        # before the caches forget the user's sessions, keys and pools
        await session.commit()
        await credentials_revoked(request, user_id)
    return updated
