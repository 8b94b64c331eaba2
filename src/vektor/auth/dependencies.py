"""Who is calling: bearer access tokens checked against live sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from vektor.auth.models import User
from vektor.core.access import who_may_call
from vektor.core.config import Settings
from vektor.core.dependencies import ClientAddress, RateLimiterDep, SessionDep, SettingsDep
from vektor.core.errors import Forbidden, Unauthorized
from vektor.core.middleware import request_context
from vektor.core.net import limit_key
from vektor.core.security import AccessClaims, TokenError, decode_access_token
from vektor.state import app_state

BEARER = HTTPBearer(auto_error=False, description="Access token from /auth/login")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user and the login session the token belongs to."""

    user: User
    session_id: uuid.UUID


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


async def _live_claims(
    request: Request, settings: Settings, credentials: HTTPAuthorizationCredentials | None
) -> AccessClaims:
    """A verified access token whose session is still active (activity recorded)."""
    claims = _claims(credentials, settings)
    check = app_state(request).live_sessions
    now = datetime.now(UTC)
    if not await check.live(claims.session_id, claims.user_id, now, claims.expires_at):
        raise Unauthorized("Session is no longer valid")
    request_context(request.scope)["user_id"] = str(claims.user_id)
    return claims


@who_may_call("user")
async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Principal:
    """Verify the bearer token and that its session is still active; the user's row is
    loaded into the request's Session, for routes that read or change it."""
    claims = await _live_claims(request, settings, credentials)
    user = await session.get(User, claims.user_id)
    # Hand the connection back now: a route may wait on other things (an upstream, its own
    # short transactions) and must not hold a pooled connection meanwhile.
    await session.commit()
    if user is None:
        raise Unauthorized("Session is no longer valid")
    return Principal(user=user, session_id=claims.session_id)


@who_may_call("user")
async def get_caller_id(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> uuid.UUID:
    """The id of the authenticated user, for routes that need nothing else of the user:
    the same checks as `get_principal`, with no Session. The settings come from the app,
    not from a dependency: FastAPI walks a route's whole dependency tree on every request,
    and each node costs more than reading them."""
    settings = app_state(request).settings
    return (await _live_claims(request, settings, credentials)).user_id


async def credentials_revoked(connection: HTTPConnection, user_id: uuid.UUID) -> None:
    """Forget every cached session and API key of the user (and their MCP pools), on every
    instance. Call it once a change that ends any of them is committed (logout, a reused
    refresh token, password change, device removal, key deletion, account deletion,
    disabling, an admin's change of the pools): from then on every instance asks the
    database about them again."""
    await app_state(connection).revocations.bump(user_id)


async def get_current_user(principal: CurrentPrincipal) -> User:
    """The authenticated user."""
    return principal.user


@who_may_call("admin")
async def get_admin_user(user: CurrentUser) -> User:
    """The authenticated user, who must be an admin."""
    if not user.is_admin:
        raise Forbidden("Admin privileges required")
    return user


async def limit_auth_by_address(
    limiter: RateLimiterDep, settings: SettingsDep, address: ClientAddress
) -> None:
    """Count an auth attempt against the caller's address (an IPv6 caller's /64)."""
    await limiter.hit(settings.rate_limit_auth, [("auth:ip", limit_key(address))])


async def limit_auth_by_account(
    limiter: RateLimiterDep, settings: SettingsDep, principal: CurrentPrincipal
) -> None:
    """Count an attempt against the signed-in account, for routes that check its password or
    tell whether an email or username is taken: a stolen token earns no unlimited guesses."""
    await limiter.hit(settings.rate_limit_auth, [("auth:account", str(principal.user.id))])


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
CurrentUser = Annotated[User, Depends(get_current_user)]
CallerId = Annotated[uuid.UUID, Depends(get_caller_id)]
AdminUser = Annotated[User, Depends(get_admin_user)]
AuthRateLimit = Depends(limit_auth_by_address)
AccountRateLimit = Depends(limit_auth_by_account)
