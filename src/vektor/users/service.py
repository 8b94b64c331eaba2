"""Rules of profiles, passwords, preferences and account deletion."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.auth.hot_repository import UserHotRepository
from vektor.auth.models import User
from vektor.auth.repository import UserRepository
from vektor.auth.schemas import UserRead
from vektor.auth.service import revoke_sessions
from vektor.core.config import Settings
from vektor.core.direct import DirectDatabase
from vektor.core.errors import BadRequest, Conflict, Unauthorized
from vektor.core.events import EventBus
from vektor.core.security import hash_password_async, verify_password_async
from vektor.users.repository import PreferenceRepository
from vektor.users.schemas import PreferencesRead


async def read_profile(database: DirectDatabase, user_id: uuid.UUID) -> UserRead:
    """The user's profile; Unauthorized if the account is gone (deleted meanwhile)."""
    found = await UserHotRepository(database).profile(user_id)
    if found is None:
        raise Unauthorized("Session is no longer valid")
    return UserRead.model_validate(found)


async def update_profile(
    session: AsyncSession, *, events: EventBus, user: User, changes: dict[str, Any]
) -> User:
    """Change email, username or avatar; Conflict if the email or username is taken."""
    email = changes["email"].strip().lower() if "email" in changes else None
    username_key = changes["username"].lower() if "username" in changes else None
    users = UserRepository(session)
    if await users.taken(email=email, username_key=username_key, exclude=user.id):
        raise Conflict("Email or username already registered")
    if email is not None:
        user.email = email
    if "username" in changes:
        user.username, user.username_key = changes["username"], username_key or ""
    if "avatar_url" in changes:
        user.avatar_url = changes["avatar_url"]
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("Email or username already registered") from exc
    await events.publish(user.id, "profile.updated", user.id)
    return user


async def change_password(
    session: AsyncSession,
    *,
    settings: Settings,
    user: User,
    current_session: uuid.UUID,
    current_password: str,
    new_password: str,
) -> None:
    """Replace the password and revoke every other session of the user."""
    if not await verify_password_async(current_password, user.password_hash):
        raise BadRequest("Current password is incorrect")
    user.password_hash = await hash_password_async(new_password, rounds=settings.bcrypt_rounds)
    user.password_changed_at = datetime.now(UTC)
    await revoke_sessions(session, user_id=user.id, reason="password_change", keep=current_session)
    logger.info("password changed user={}", user.id)


async def delete_account(session: AsyncSession, *, user_id: uuid.UUID, backup_dir: Path) -> None:
    """Delete the account, every row it owns and, once that is committed, its backup files."""
    await UserRepository(session).delete(user_id)
    # Committed here, not at the request boundary: files go only once the rows are gone.
    await session.commit()
    await asyncio.to_thread(shutil.rmtree, Path(backup_dir) / str(user_id), True)
    logger.info("account deleted user={}", user_id)


async def get_preferences(session: AsyncSession, *, user_id: uuid.UUID) -> PreferencesRead:
    """Stored preferences over the defaults."""
    row = await PreferenceRepository(session).get(user_id)
    return PreferencesRead.model_validate(row.values if row else {})


async def update_preferences(
    session: AsyncSession, *, events: EventBus, user_id: uuid.UUID, changes: dict[str, Any]
) -> PreferencesRead:
    """Merge the changes into the stored preferences."""
    current = await get_preferences(session, user_id=user_id)
    merged = current.model_copy(update=changes)
    await PreferenceRepository(session).save(user_id, merged.model_dump(mode="json"))
    await events.publish(user_id, "preferences.updated")
    return merged
