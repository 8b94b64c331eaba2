"""Rules of registration, login, token rotation and logout."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from loguru import logger
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vektor.auth.models import Device, RefreshToken, User, UserSession
from vektor.auth.repository import (
    DeviceRepository,
    RefreshTokenRepository,
    SessionRepository,
    UserRepository,
)
from vektor.core.config import Settings
from vektor.core.errors import Conflict, Forbidden, NotFound, Unauthorized
from vektor.core.ratelimit import RateLimiter
from vektor.core.security import (
    create_access_token,
    dummy_hash,
    hash_password_async,
    hash_token,
    new_refresh_token,
    verify_password_async,
)

BAD_CREDENTIALS = "Incorrect username or password"
BAD_REFRESH = "Invalid or expired refresh token"
ACCOUNT_DISABLED = "Account disabled"


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A fresh access token and refresh token for one session."""

    access_token: str
    expires_in: int
    refresh_token: str
    device_id: str


async def create_user(
    session: AsyncSession,
    *,
    settings: Settings,
    email: str,
    username: str,
    password: str,
    is_admin: bool = False,
) -> User:
    """Create an account; Conflict if the email or username is taken."""
    users = UserRepository(session)
    email, username_key = email.strip().lower(), username.lower()
    if await users.taken(email=email, username_key=username_key):
        raise Conflict("Email or username already registered")
    password_hash = await hash_password_async(password, rounds=settings.bcrypt_rounds)
    user = User(
        email=email,
        username=username,
        username_key=username_key,
        password_hash=password_hash,
        is_admin=is_admin,
    )
    try:
        async with session.begin_nested():
            await users.add(user)
    except IntegrityError as exc:  # a concurrent registration took it first
        raise Conflict("Email or username already registered") from exc
    return user


async def login(
    session: AsyncSession,
    *,
    settings: Settings,
    identifier: str,
    password: str,
    device_id: str | None,
    device_name: str | None,
) -> IssuedTokens:
    """Check credentials and open a session on the device."""
    user = await UserRepository(session).get_by_login(identifier)
    # Unknown account: verify against a dummy hash so time and answer are the same.
    if user is None:
        stored = await asyncio.to_thread(dummy_hash, settings.bcrypt_rounds)
    else:
        stored = user.password_hash
    valid = await verify_password_async(password, stored)
    if user is None or not valid:
        raise Unauthorized(BAD_CREDENTIALS)
    if user.disabled:  # said only to whoever knows the password
        raise Forbidden(ACCOUNT_DISABLED)
    device = await _device_for(session, user.id, device_id, device_name)
    user_session = await SessionRepository(session).add(
        UserSession(user_id=user.id, device_pk=device.id)
    )
    logger.info("login user={} session={}", user.id, user_session.id)
    return await _issue(session, settings, user_session, device.device_id)


async def _device_for(
    session: AsyncSession, user_id: uuid.UUID, device_id: str | None, name: str | None
) -> Device:
    devices = DeviceRepository(session)
    device_id = device_id or "dev-" + secrets.token_hex(8)
    device = await devices.get(user_id, device_id)
    now = datetime.now(UTC)
    if device is None:
        try:
            async with session.begin_nested():
                return await devices.add(
                    Device(user_id=user_id, device_id=device_id, name=name, last_seen_at=now)
                )
        except IntegrityError:  # a parallel first login on this device created it
            device = await devices.get(user_id, device_id)
            if device is None:
                raise
    device.last_seen_at = now
    if name:
        device.name = name
    return device


async def _issue(
    session: AsyncSession, settings: Settings, user_session: UserSession, device_id: str
) -> IssuedTokens:
    now = datetime.now(UTC)
    lifetime = timedelta(minutes=settings.access_token_expire_minutes)
    access = create_access_token(
        secret_key=settings.secret_key,
        user_id=user_session.user_id,
        session_id=user_session.id,
        lifetime=lifetime,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        now=now,
    )
    refresh = new_refresh_token()
    await RefreshTokenRepository(session).add(
        RefreshToken(
            session_id=user_session.id,
            token_hash=hash_token(refresh),
            created_at=now,
            expires_at=now + timedelta(days=settings.refresh_token_expire_days),
        )
    )
    return IssuedTokens(
        access_token=access,
        expires_in=int(lifetime.total_seconds()),
        refresh_token=refresh,
        device_id=device_id,
    )


async def refresh(
    session: AsyncSession,
    *,
    settings: Settings,
    limiter: RateLimiter,
    refresh_token: str,
    revoked: Callable[[uuid.UUID], Awaitable[None]],
) -> IssuedTokens:
    """Rotate a refresh token; a reused one revokes its whole session (RFC 9700 §4.14),
    and `revoked` is told whose, once that is committed."""
    tokens, sessions = RefreshTokenRepository(session), SessionRepository(session)
    stored = await tokens.get_by_hash(hash_token(refresh_token))
    if stored is None:
        raise Unauthorized(BAD_REFRESH)
    user_session = await sessions.get_active(stored.session_id)
    if user_session is None:
        raise Unauthorized(BAD_REFRESH)
    await limiter.hit(settings.rate_limit_auth, [("auth:account", str(user_session.user_id))])
    now = datetime.now(UTC)
    if stored.expires_at <= now:
        raise Unauthorized(BAD_REFRESH)
    owner = await UserRepository(session).get(user_session.user_id)
    if owner is None or owner.disabled:
        raise Unauthorized(BAD_REFRESH)
    if stored.used_at is not None or not await tokens.mark_used(stored.id, now):
        await sessions.revoke(user_session.id, reason="refresh_reuse", at=now)
        # Committed here, not at the request boundary: the error below rolls back.
        await session.commit()
        await revoked(user_session.user_id)
        logger.warning("refresh token reuse: session {} revoked", user_session.id)
        raise Unauthorized(BAD_REFRESH)
    device = await session.get(Device, user_session.device_pk)
    device_id = device.device_id if device else ""
    return await _issue(session, settings, user_session, device_id)


async def session_is_active(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID
) -> bool:
    """Whether a login session is still active (a short transaction of its own)."""
    async with sessionmaker() as session:
        return await SessionRepository(session).get_active(session_id) is not None


async def logout(session: AsyncSession, *, refresh_token: str) -> uuid.UUID:
    """End the session the refresh token belongs to; its user's id."""
    stored = await RefreshTokenRepository(session).get_by_hash(hash_token(refresh_token))
    if stored is None:
        raise Unauthorized(BAD_REFRESH)
    sessions = SessionRepository(session)
    active = await sessions.get_active(stored.session_id)
    if active is None:
        raise Unauthorized(BAD_REFRESH)
    await sessions.revoke(stored.session_id, reason="logout", at=datetime.now(UTC))
    return active.user_id


async def revoke_sessions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    reason: str,
    keep: uuid.UUID | None = None,
) -> None:
    """Sign the user out everywhere (but the session `keep`): every access and refresh
    token of those sessions stops working at once, on every instance. Every path that ends
    a user's sessions wholesale (a password change, disabling the account) comes here."""
    await SessionRepository(session).revoke_user_sessions(
        user_id, reason=reason, at=datetime.now(UTC), keep=keep
    )
    logger.info("sessions revoked user={} reason={}", user_id, reason)


async def set_mcp_pools(
    session: AsyncSession, *, user_id: uuid.UUID, pools: list[str] | None
) -> User:
    """Limit the MCP pools a user may use, in chat and through /mcp (None: every pool)."""
    user = await UserRepository(session).get(user_id)
    if user is None:
        raise NotFound("User not found")
    user.mcp_pools = sorted(set(pools)) if pools is not None else None
    await session.flush()
    return user
