"""Who is calling: bearer access tokens checked against live sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vektor.auth.models import UserSession
from vektor.auth.repository import SessionRepository
from vektor.auth.session_check import TOUCH_INTERVAL, SessionCheck
from vektor.core.config import Settings
from vektor.core.dependencies import ClientAddress, RateLimiterDep, SessionDep, SettingsDep
from vektor.core.errors import Forbidden, Unauthorized
from vektor.core.middleware import request_context
from vektor.core.security import AccessClaims, TokenError, decode_access_token
from vektor.users.models import User

_bearer = HTTPBearer(auto_error=False, description="Access token from /auth/login")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user and the login session the token belongs to."""

    user: User
    session: UserSession


def _claims(credentials: HTTPAuthorizationCredentials | None, settings: Settings) -> AccessClaims:
    """The verified claims of a bearer access token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Not authenticated")
    try:
        return decode_access_token(
            credentials.credentials,
            secret_key=settings.secret_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    except TokenError as exc:
        raise Unauthorized("Invalid or expired token") from exc


async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Verify the bearer token and that its session is still active."""
    claims = _claims(credentials, settings)
    sessions = SessionRepository(session)
    found = await sessions.get_active_with_user(claims.session_id, claims.user_id)
    if found is None:
        raise Unauthorized("Session is no longer valid")
    user_session, user = found
    now = datetime.now(UTC)
    if now - user_session.last_seen_at >= TOUCH_INTERVAL:
        await sessions.touch(user_session.id, user_session.device_pk, now)
    # Hand the connection back now: a route may wait on other things (an upstream, its own
    # short transactions) and must not hold a pooled connection meanwhile.
    await session.commit()
    request_context(request.scope)["user_id"] = str(user.id)
    return Principal(user=user, session=user_session)


async def get_caller_id(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> uuid.UUID:
    """The id of the authenticated user, for routes that need nothing else of the user:
    the same checks as `get_principal`, in one trip to the database and no Session."""
    claims = _claims(credentials, settings)
    check: SessionCheck = request.app.state.session_check
    if not await check.live(claims.session_id, claims.user_id, datetime.now(UTC)):
        raise Unauthorized("Session is no longer valid")
    request_context(request.scope)["user_id"] = str(claims.user_id)
    return claims.user_id


async def get_current_user(principal: CurrentPrincipal) -> User:
    """The authenticated user."""
    return principal.user


async def get_admin_user(user: CurrentUser) -> User:
    """The authenticated user, who must be an admin."""
    if not user.is_admin:
        raise Forbidden("Admin privileges required")
    return user


async def limit_auth_by_address(
    limiter: RateLimiterDep, settings: SettingsDep, address: ClientAddress
) -> None:
    """Count an auth attempt against the caller's address."""
    await limiter.hit(settings.rate_limit_auth, [("auth:ip", address)])


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
CurrentUser = Annotated[User, Depends(get_current_user)]
CallerId = Annotated[uuid.UUID, Depends(get_caller_id)]
AdminUser = Annotated[User, Depends(get_admin_user)]
AuthRateLimit = Depends(limit_auth_by_address)
