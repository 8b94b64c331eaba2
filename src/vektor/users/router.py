"""/users endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from vektor.auth.dependencies import (
    AccountRateLimit,
    AuthRateLimit,
    CallerId,
    CurrentPrincipal,
    CurrentUser,
    credentials_revoked,
)
from vektor.auth.schemas import UserRead
from vektor.core.dependencies import EventsDep, SessionDep, SettingsDep
from vektor.core.schemas import Detail
from vektor.state import app_state
from vektor.users import service
from vektor.users.schemas import PasswordChange, PreferencesRead, PreferencesUpdate, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", response_model=UserRead, operation_id="get_users_me")
async def read_me(request: Request, user_id: CallerId) -> UserRead:
    """The caller's profile."""
    return await service.read_profile(app_state(request).direct, user_id)


# A 409 tells whether an email or username is taken, and a password check costs a bcrypt
# round: both are limited like login, per address and per account (RATE_LIMIT_AUTH).
AUTH_LIMITED = [AuthRateLimit, AccountRateLimit]


@router.put(
    "/me",
    response_model=Detail,
    operation_id="update_users_me",
    dependencies=AUTH_LIMITED,
)
async def update_me(
    body: UserUpdate, user: CurrentUser, session: SessionDep, events: EventsDep
) -> Detail:
    """Change email, username or avatar (nothing else)."""
    await service.update_profile(session, events=events, user=user, changes=body.changes())
    return Detail(detail="Perfil actualizado")


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, operation_id="delete_users_me")
async def delete_me(
    request: Request, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """Delete the account and all its data."""
    await app_state(request).backups.cancel_user(user.id)
    await service.delete_account(session, user_id=user.id, backup_dir=settings.backup_dir)
    await credentials_revoked(request, user.id)  # delete_account has committed
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/change-password",
    response_model=Detail,
    operation_id="post_users_change_password",
    dependencies=AUTH_LIMITED,
)
async def change_password(
    request: Request,
    body: PasswordChange,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
) -> Detail:
    """Change the password; every other session of the account is signed out."""
    await service.change_password(
        session,
        settings=settings,
        user=principal.user,
        current_session=principal.session_id,
        current_password=body.current_password,
        new_password=body.new_password,
    )
    await session.commit()  # before the caches forget the other sessions
    await credentials_revoked(request, principal.user.id)
    return Detail(detail="Contraseña cambiada")


@router.get("/preferences", response_model=PreferencesRead, operation_id="get_users_preferences")
async def read_preferences(user: CurrentUser, session: SessionDep) -> PreferencesRead:
    """The caller's preferences (defaults until set)."""
    return await service.get_preferences(session, user_id=user.id)


@router.put("/preferences", response_model=Detail, operation_id="put_users_preferences")
async def update_preferences(
    body: PreferencesUpdate, user: CurrentUser, session: SessionDep, events: EventsDep
) -> Detail:
    """Change some preferences; unknown keys or bad values are a 422."""
    await service.update_preferences(
        session, events=events, user_id=user.id, changes=body.changes()
    )
    return Detail(detail="Preferencias actualizadas")
