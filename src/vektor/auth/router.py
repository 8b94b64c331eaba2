"""/auth endpoints."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Header, Request, status
from pydantic import StringConstraints

from vektor.auth import service
from vektor.auth.dependencies import AuthRateLimit, credentials_revoked
from vektor.auth.schemas import (
    DEVICE_ID_PATTERN,
    LogoutRequest,
    RefreshRequest,
    TokenRead,
    UserCreate,
    UserRead,
)
from vektor.core.dependencies import RateLimiterDep, SessionDep, SettingsDep
from vektor.core.schemas import Detail

router = APIRouter(prefix="/auth", tags=["auth"], dependencies=[AuthRateLimit])

DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
DeviceName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
LoginField = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    operation_id="register",
    responses={409: {"description": "Email or username already registered"}},
)
async def register(
    body: UserCreate, session: SessionDep, settings: SettingsDep, limiter: RateLimiterDep
) -> UserRead:
    """Create an account."""
    await limiter.hit(settings.rate_limit_auth, [("auth:account", body.email.lower())])
    user = await service.create_user(
        session,
        settings=settings,
        email=body.email,
        username=body.username,
        password=body.password,
    )
    return UserRead.model_validate(user)


@router.post(
    "/login",
    response_model=TokenRead,
    operation_id="login",
    responses={401: {"description": "Wrong email, username or password"}},
)
async def login(
    session: SessionDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
    username: Annotated[LoginField, Form(description="Email or username")],
    password: Annotated[LoginField, Form()],
    device_id: Annotated[DeviceId | None, Form()] = None,
    device_name: Annotated[DeviceName | None, Form()] = None,
    x_device_id: Annotated[DeviceId | None, Header()] = None,
    x_device_name: Annotated[DeviceName | None, Header()] = None,
) -> TokenRead:
    """Log in with email or username and password; opens a session on the device."""
    await limiter.hit(settings.rate_limit_auth, [("auth:account", username.strip().lower())])
    issued = await service.login(
        session,
        settings=settings,
        identifier=username,
        password=password,
        device_id=device_id or x_device_id,
        device_name=device_name or x_device_name,
    )
    return _tokens(issued)


@router.post(
    "/refresh",
    response_model=TokenRead,
    operation_id="refresh",
    responses={401: {"description": "Unknown, expired or already used refresh token"}},
)
async def refresh(
    request: Request,
    body: RefreshRequest,
    session: SessionDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
) -> TokenRead:
    """Exchange a refresh token for new tokens; the old refresh token stops working."""

    async def revoked(user_id: uuid.UUID) -> None:
        await credentials_revoked(request, user_id)

    issued = await service.refresh(
        session,
        settings=settings,
        limiter=limiter,
        refresh_token=body.refresh_token,
        revoked=revoked,
    )
    return _tokens(issued)


@router.post(
    "/logout",
    response_model=Detail,
    operation_id="logout",
    responses={401: {"description": "Unknown or expired refresh token"}},
)
async def logout(request: Request, body: LogoutRequest, session: SessionDep) -> Detail:
    """End the session of this refresh token; its access tokens stop working."""
    user_id = await service.logout(session, refresh_token=body.refresh_token)
    await session.commit()  # before the caches forget the session: none may learn it again
    await credentials_revoked(request, user_id)
    return Detail(detail="Logout successful")


def _tokens(issued: service.IssuedTokens) -> TokenRead:
    return TokenRead(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        device_id=issued.device_id,
    )
